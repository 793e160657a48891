-- Per-field vocabulary fitted on train rows only: every train value with its count and, when the
-- count reaches $min_count, an id (3, 4, ... by descending count, then value; 0-2 are reserved).
CREATE OR REPLACE TEMP TABLE feature_vocab AS
WITH train_values AS (
    UNPIVOT (
        SELECT
            CAST(user_id AS VARCHAR) AS user_id, CAST(gender AS VARCHAR) AS gender,
            CAST(age AS VARCHAR) AS age, CAST(occupation AS VARCHAR) AS occupation,
            CAST(zip AS VARCHAR) AS zip, CAST(movie_id AS VARCHAR) AS movie_id,
            CAST(title AS VARCHAR) AS title, CAST(genres AS VARCHAR) AS genres
        FROM feature_rows
        WHERE split = 'train'
    )
    ON user_id, gender, age, occupation, zip, movie_id, title, genres
    INTO NAME field VALUE value
),
counted AS (
    SELECT field, value, count(*) AS count FROM train_values GROUP BY field, value
)
SELECT
    field,
    value,
    count,
    CASE WHEN count >= $min_count
        THEN 2 + row_number() OVER (
            PARTITION BY field, count >= $min_count ORDER BY count DESC, value
        )
    END AS id
FROM counted;
