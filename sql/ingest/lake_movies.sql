-- Movies in the lake ($files), with where each row lives.
SELECT
    movie_id, title, genres,
    'movie_id ' || movie_id || ' (' || parse_filename(filename) || ')' AS "where"
FROM read_parquet($files, filename = true);
