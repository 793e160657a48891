-- How many fast-parsed movies (view `clean`) have a movie_id the lake ($files) holds already.
SELECT count(*)
FROM clean AS c
SEMI JOIN read_parquet($files) AS l ON c.movie_id = l.movie_id;
