-- Write the accepted rows of one spec source file ($source) to one Parquet file ($path): the
-- table's columns ($columns, in spec order), source file and line (row) number.
COPY (
    SELECT
        COLUMNS(lambda c: list_contains($columns, c)),
        $source AS source_file,
        line_number
    FROM staged
    WHERE reason IS NULL AND dropped IS NULL
    ORDER BY line_number
) TO $path (FORMAT parquet, COMPRESSION snappy);
