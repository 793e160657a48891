-- Every user_id in the given users Parquet files ($files).
SELECT DISTINCT user_id FROM read_parquet($files);
