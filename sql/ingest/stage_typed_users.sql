-- Add fast-parsed users (view `typed`: user_id, gender, age, occupation, zip, line_number) to the
-- staged source, when the file as a whole needs the exact steps (dedup, lake match, reasons).
INSERT INTO staged
SELECT line_number, user_id, gender, age, occupation, zip, NULL, NULL, NULL
FROM typed;
