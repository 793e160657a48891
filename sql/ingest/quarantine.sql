-- Write the quarantined rows of one source file ($source, lake table $table) to $path.
COPY (
    SELECT $table AS table_name, $source AS source_file, line_number, reason, text AS raw_line
    FROM staged
    WHERE reason IS NOT NULL
    ORDER BY line_number
) TO $path (FORMAT parquet);
