-- Users in the lake ($files), with where each row lives.
SELECT
    user_id, gender, age, occupation, zip,
    'user_id ' || user_id || ' (' || parse_filename(filename) || ')' AS "where"
FROM read_parquet($files, filename = true);
