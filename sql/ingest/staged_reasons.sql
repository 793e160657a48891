-- Quarantined rows of the staged source per reason (the offending value stripped), most first.
SELECT regexp_replace(reason, ' \(got .*?\)', '', 'g') AS reason, count(*) AS n
FROM staged
WHERE reason IS NOT NULL
GROUP BY 1
ORDER BY n DESC, reason;
