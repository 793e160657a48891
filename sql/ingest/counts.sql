-- Outcome of one staged source file.
SELECT
    count(*) FILTER (WHERE reason IS NULL AND dropped IS NULL) AS kept,
    count(*) FILTER (WHERE reason IS NOT NULL) AS quarantined,
    count(*) FILTER (WHERE dropped = 'duplicate') AS duplicates,
    count(*) FILTER (WHERE dropped = 'in_lake') AS already_in_lake
FROM staged;
