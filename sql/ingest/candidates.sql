-- Rows of the staged source that parsed and are new: the frame pandera validates.
SELECT * EXCLUDE (text, reason, dropped, _key, _row)
FROM staged
WHERE reason IS NULL AND dropped IS NULL
ORDER BY line_number;
