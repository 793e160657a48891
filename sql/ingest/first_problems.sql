-- The first quarantined lines of the staged source, for the summary.
SELECT line_number, reason
FROM staged
WHERE reason IS NOT NULL
ORDER BY line_number
LIMIT $limit;
