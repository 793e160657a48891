-- Empty staging table for one users source file.
CREATE OR REPLACE TEMP TABLE staged (
    line_number BIGINT,
    user_id INTEGER,
    gender VARCHAR,
    age INTEGER,
    occupation INTEGER,
    zip VARCHAR,
    text VARCHAR,
    reason VARCHAR,
    dropped VARCHAR
);
