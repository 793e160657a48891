-- Ratings in the lake ($files), with where each row came from.
SELECT
    user_id, movie_id, rating, timestamp,
    source_file || ' line ' || line_number AS "where"
FROM read_parquet($files);
