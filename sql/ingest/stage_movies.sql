-- Empty staging table for one movies source file.
CREATE OR REPLACE TEMP TABLE staged (
    line_number BIGINT,
    movie_id INTEGER,
    title VARCHAR,
    genres VARCHAR,
    text VARCHAR,
    reason VARCHAR,
    dropped VARCHAR
);
