-- Quarantined rows of the staged source that no earlier run recorded (registered frame
-- `recorded`: line_number of the rows recorded for the same source content).
SELECT count(*)
FROM staged
WHERE reason IS NOT NULL AND line_number NOT IN (SELECT line_number FROM recorded);
