-- Every row of a spec lake table ($files): the spec's columns ($columns) and label, with where
-- each row came from.
SELECT
    COLUMNS(lambda c: list_contains($columns, c)),
    label,
    source_file || ' line ' || line_number AS "where"
FROM read_parquet($files);
