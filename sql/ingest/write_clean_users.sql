-- Write a clean users file (view `clean`: every line parsed, new, unique and valid) to one Parquet
-- file ($path); same columns and order as write_users.sql.
COPY (
    SELECT user_id, gender, age, occupation, zip
    FROM clean
    ORDER BY user_id
) TO $path (FORMAT parquet, COMPRESSION snappy);
