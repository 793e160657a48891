-- Labelled interaction rows of one protocol, joined with users and movies, cut into splits.
-- Parameters: $ratings, $users, $movies (lists of Parquet files), $order ('time' | 'random' | 'file'),
-- $seed, $click_threshold, $train_fraction, $valid_fraction.
CREATE OR REPLACE TEMP TABLE feature_rows AS
WITH users AS (
    SELECT user_id, gender, age, occupation, zip
    FROM read_parquet($users, hive_partitioning = true)
    QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY ingest_date DESC) = 1
),
movies AS (
    SELECT movie_id, title, genres
    FROM read_parquet($movies, hive_partitioning = true)
    QUALIFY row_number() OVER (PARTITION BY movie_id ORDER BY ingest_date DESC) = 1
),
joined AS (
    SELECT
        r.user_id, u.gender, u.age, u.occupation, u.zip, r.movie_id, m.title, m.genres,
        r.rating, r.timestamp, r.source_file, r.line_number,
        CAST(r.rating >= $click_threshold AS TINYINT) AS label
    FROM read_parquet($ratings, hive_partitioning = true) AS r
    JOIN users AS u USING (user_id)
    JOIN movies AS m USING (movie_id)
),
ordered AS (
    SELECT
        *,
        row_number() OVER (
            ORDER BY
                CASE WHEN $order = 'time' THEN timestamp END,
                CASE WHEN $order = 'random'
                    THEN md5_number(concat_ws(':', $seed, user_id, movie_id, timestamp)) END,
                CASE WHEN $order = 'file' THEN source_file END,
                CASE WHEN $order = 'file' THEN line_number END,
                user_id, movie_id, timestamp
        ) AS row_number,
        count(*) OVER () AS total_rows
    FROM joined
)
SELECT
    * EXCLUDE (total_rows),
    CASE
        WHEN row_number <= CAST(round(total_rows * $train_fraction) AS BIGINT) THEN 'train'
        WHEN row_number <= CAST(round(total_rows * ($train_fraction + $valid_fraction)) AS BIGINT)
            THEN 'valid'
        ELSE 'test'
    END AS split
FROM ordered;
