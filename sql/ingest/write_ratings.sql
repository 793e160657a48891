-- Write the accepted ratings of one source file to one Parquet file ($path).
COPY (
    SELECT user_id, movie_id, rating, timestamp, $source AS source_file, line_number
    FROM staged
    WHERE reason IS NULL AND dropped IS NULL
) TO $path (FORMAT parquet, COMPRESSION snappy, PARQUET_VERSION V2, DICTIONARY_SIZE_LIMIT 1);
