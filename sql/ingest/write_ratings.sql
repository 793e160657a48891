-- Write the accepted ratings of one source file to one Parquet file ($path).
COPY (
    SELECT
        user_id, movie_id, rating, timestamp,
        CAST($source AS source_name) AS source_file,  -- see source_type.sql
        line_number
    FROM staged
    WHERE reason IS NULL AND dropped IS NULL
) TO $path (FORMAT parquet, COMPRESSION snappy, PARQUET_VERSION V2, DICTIONARY_SIZE_LIMIT 1);
