-- Write the accepted movies of one source file to one Parquet file ($path).
COPY (
    SELECT movie_id, title, genres
    FROM staged
    WHERE reason IS NULL AND dropped IS NULL
    ORDER BY movie_id
) TO $path (FORMAT parquet, COMPRESSION snappy);
