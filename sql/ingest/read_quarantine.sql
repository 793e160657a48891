-- Every quarantined row in the given quarantine Parquet files ($files); files written before
-- the quarantine kept the source's sha256 read it as null.
SELECT table_name, source_file, source_sha256, line_number, reason, raw_line
FROM read_parquet($files, union_by_name = true)
ORDER BY table_name, source_file, line_number;
