-- Write a clean source file (view `clean`: every line parsed, new, unique and valid, in line
-- order) to one Parquet file ($path); same layout as write.sql.
COPY (
    SELECT
        COLUMNS(lambda c: list_contains($columns, c)),
        CAST($source AS source_name) AS source_file,
        line_number
    FROM clean
) TO $path (FORMAT parquet, COMPRESSION snappy, PARQUET_VERSION V2, DICTIONARY_SIZE_LIMIT 1);
