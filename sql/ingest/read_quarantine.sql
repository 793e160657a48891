-- Every quarantined row in the given quarantine Parquet files ($files).
SELECT table_name, source_file, line_number, reason, raw_line
FROM read_parquet($files)
ORDER BY table_name, source_file, line_number;
