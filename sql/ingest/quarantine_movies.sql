-- Write the quarantined movies of one source file ($path) with file, line and reason.
COPY (
    SELECT
        'movies' AS table_name, $source AS source_file, line_number, reason,
        coalesce(text, concat_ws('::', movie_id, title, genres)) AS raw_line
    FROM staged
    WHERE reason IS NOT NULL
    ORDER BY line_number
) TO $path (FORMAT parquet);
