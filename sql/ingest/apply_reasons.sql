-- Mark the rows pandera rejected (registered frame `rejected`: line_number, reason).
UPDATE staged AS s
SET reason = r.reason
FROM rejected AS r
WHERE s.line_number = r.line_number;
