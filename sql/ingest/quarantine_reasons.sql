-- Quarantined rows per reason (the offending value stripped) in the given files ($files).
SELECT regexp_replace(reason, ' \(got .*?\)', '', 'g') AS reason, count(*) AS n
FROM read_parquet($files)
GROUP BY 1
ORDER BY n DESC, reason
LIMIT 20;
