-- Line numbers of the staged source's quarantined rows.
SELECT line_number
FROM staged
WHERE reason IS NOT NULL
ORDER BY line_number;
