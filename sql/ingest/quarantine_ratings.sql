-- Write the quarantined ratings of one source file ($path) with file, line and reason.
COPY (
    SELECT
        'ratings' AS table_name, $source AS source_file, line_number, reason,
        coalesce(text, concat_ws('::', user_id, movie_id, rating, timestamp)) AS raw_line
    FROM staged
    WHERE reason IS NOT NULL
    ORDER BY line_number
) TO $path (FORMAT parquet);
