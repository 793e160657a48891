-- How many fast-parsed users (view `clean`) have a user_id the lake ($files) holds already.
SELECT count(*)
FROM clean AS c
SEMI JOIN read_parquet($files) AS l ON c.user_id = l.user_id;
