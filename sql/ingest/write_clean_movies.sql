-- Write a clean movies file (view `clean`: every line parsed, new, unique and valid) to one
-- Parquet file ($path); same columns and order as write_movies.sql.
COPY (
    SELECT movie_id, title, genres
    FROM clean
    ORDER BY movie_id
) TO $path (FORMAT parquet, COMPRESSION snappy);
