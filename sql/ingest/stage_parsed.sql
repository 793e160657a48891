-- Empty table of one spec source file's rows split into text fields (dataset specs).
CREATE OR REPLACE TEMP TABLE parsed (
    line_number BIGINT,
    fields VARCHAR[],
    text VARCHAR,
    reason VARCHAR
);
