-- Write the accepted rows of one staged source file to one Parquet file ($path): the table's
-- columns ($columns, in spec order), source file ($source, cast to the ENUM `source_name`, see
-- source_type.sql) and line (row) number. Same layout as write_clean.sql.
COPY (
    SELECT
        COLUMNS(lambda c: list_contains($columns, c)),
        CAST($source AS source_name) AS source_file,
        line_number
    FROM staged
    WHERE reason IS NULL AND dropped IS NULL
    ORDER BY line_number
) TO $path (FORMAT parquet, COMPRESSION snappy, PARQUET_VERSION V2, DICTIONARY_SIZE_LIMIT 1);
