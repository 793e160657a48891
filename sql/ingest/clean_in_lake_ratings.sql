-- How many fast-parsed ratings (view `clean`) have a key the lake ($files) holds already.
SELECT count(*)
FROM clean AS c
SEMI JOIN read_parquet($files) AS l
    ON c.user_id = l.user_id AND c.movie_id = l.movie_id AND c.timestamp = l.timestamp;
