-- One batch of Parquet rows (view `batch`: line_number = row index, fields = the spec's columns
-- as text); the raw line kept for the quarantine is the fields as a JSON array.
INSERT INTO parsed
SELECT line_number, fields, left(to_json(fields)::VARCHAR, 1000), NULL
FROM batch;
