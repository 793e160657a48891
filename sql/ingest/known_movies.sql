-- Every movie_id in the given movies Parquet files ($files).
SELECT DISTINCT movie_id FROM read_parquet($files);
