-- Per split: rows, positive rate, time range, and the share of OOV ids (id 2) per field.
SELECT
    split,
    count(*) AS rows,
    avg(label) AS positive_rate,
    min(timestamp) AS min_timestamp,
    max(timestamp) AS max_timestamp,
    avg(CAST(user_id = 2 AS DOUBLE)) AS oov_user_id,
    avg(CAST(gender = 2 AS DOUBLE)) AS oov_gender,
    avg(CAST(age = 2 AS DOUBLE)) AS oov_age,
    avg(CAST(occupation = 2 AS DOUBLE)) AS oov_occupation,
    avg(CAST(zip = 2 AS DOUBLE)) AS oov_zip,
    avg(CAST(movie_id = 2 AS DOUBLE)) AS oov_movie_id,
    avg(CAST(title = 2 AS DOUBLE)) AS oov_title,
    avg(CAST(genres = 2 AS DOUBLE)) AS oov_genres
FROM encoded_rows
GROUP BY split
ORDER BY split;
