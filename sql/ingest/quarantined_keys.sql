-- Key columns ($keys), line and reason of the staged source's quarantined rows whose key parsed:
-- the root causes named when another table's rows refer to these keys.
SELECT COLUMNS(lambda c: list_contains($keys, c)), line_number, reason
FROM staged
WHERE reason IS NOT NULL
ORDER BY line_number;
