-- Every row of a spec lake table ($files): the table's columns ($columns), with where each row
-- came from.
SELECT
    COLUMNS(lambda c: list_contains($columns, c)),
    source_file || ' line ' || line_number AS "where"
FROM read_parquet($files);
