-- Write the quarantined users of one source file ($path) with file, line and reason.
COPY (
    SELECT
        'users' AS table_name, $source AS source_file, line_number, reason,
        coalesce(text, concat_ws('::', user_id, gender, age, occupation, zip)) AS raw_line
    FROM staged
    WHERE reason IS NOT NULL
    ORDER BY line_number
) TO $path (FORMAT parquet);
