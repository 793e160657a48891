-- Write a clean ratings file (view `clean`: every line parsed, new, unique and valid) to one
-- Parquet file ($path); same columns as write_ratings.sql.
COPY (
    SELECT
        user_id, movie_id, rating, timestamp,
        CAST($source AS source_name) AS source_file,  -- see source_type.sql
        line_number
    FROM clean
) TO $path (FORMAT parquet, COMPRESSION snappy, PARQUET_VERSION V2, DICTIONARY_SIZE_LIMIT 1);
