-- Every row with each field's raw value and its vocabulary id (unseen -> OOV = 2), once.
CREATE OR REPLACE TEMP TABLE encoded_rows AS
SELECT
    r.split,
    r.row_number,
    r.label,
    r.timestamp,
    r.user_id AS user_id_raw, r.gender AS gender_raw, r.age AS age_raw,
    r.occupation AS occupation_raw, r.zip AS zip_raw, r.movie_id AS movie_id_raw,
    r.title AS title_raw, r.genres AS genres_raw,
    coalesce(v_user.id, 2) AS user_id,
    coalesce(v_gender.id, 2) AS gender,
    coalesce(v_age.id, 2) AS age,
    coalesce(v_occupation.id, 2) AS occupation,
    coalesce(v_zip.id, 2) AS zip,
    coalesce(v_movie.id, 2) AS movie_id,
    coalesce(v_title.id, 2) AS title,
    coalesce(v_genres.id, 2) AS genres
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
    ON v_genres.field = 'genres' AND v_genres.value = CAST(r.genres AS VARCHAR);
