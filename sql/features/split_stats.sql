-- Per split: rows, positive rate, time range, and the share of OOV ids per field.
SELECT
    r.split,
    count(*) AS rows,
    avg(r.label) AS positive_rate,
    min(r.timestamp) AS min_timestamp,
    max(r.timestamp) AS max_timestamp,
    avg(CAST(v_user.id IS NULL AS DOUBLE)) AS oov_user_id,
    avg(CAST(v_gender.id IS NULL AS DOUBLE)) AS oov_gender,
    avg(CAST(v_age.id IS NULL AS DOUBLE)) AS oov_age,
    avg(CAST(v_occupation.id IS NULL AS DOUBLE)) AS oov_occupation,
    avg(CAST(v_zip.id IS NULL AS DOUBLE)) AS oov_zip,
    avg(CAST(v_movie.id IS NULL AS DOUBLE)) AS oov_movie_id,
    avg(CAST(v_title.id IS NULL AS DOUBLE)) AS oov_title,
    avg(CAST(v_genres.id IS NULL AS DOUBLE)) AS oov_genres
FROM feature_rows AS r
LEFT JOIN feature_vocab AS v_user
    ON v_user.field = 'user_id' AND v_user.value = CAST(r.user_id AS VARCHAR)
LEFT JOIN feature_vocab AS v_gender
    ON v_gender.field = 'gender' AND v_gender.value = CAST(r.gender AS VARCHAR)
LEFT JOIN feature_vocab AS v_age
    ON v_age.field = 'age' AND v_age.value = CAST(r.age AS VARCHAR)
LEFT JOIN feature_vocab AS v_occupation
    ON v_occupation.field = 'occupation' AND v_occupation.value = CAST(r.occupation AS VARCHAR)
LEFT JOIN feature_vocab AS v_zip
    ON v_zip.field = 'zip' AND v_zip.value = CAST(r.zip AS VARCHAR)
LEFT JOIN feature_vocab AS v_movie
    ON v_movie.field = 'movie_id' AND v_movie.value = CAST(r.movie_id AS VARCHAR)
LEFT JOIN feature_vocab AS v_title
    ON v_title.field = 'title' AND v_title.value = CAST(r.title AS VARCHAR)
LEFT JOIN feature_vocab AS v_genres
    ON v_genres.field = 'genres' AND v_genres.value = CAST(r.genres AS VARCHAR)
GROUP BY r.split
ORDER BY r.split;
