-- Empty staging table for one ratings source file.
CREATE OR REPLACE TEMP TABLE staged (
    line_number BIGINT,
    user_id INTEGER,
    movie_id INTEGER,
    rating INTEGER,
    timestamp BIGINT,
    text VARCHAR,
    reason VARCHAR,
    dropped VARCHAR
);
