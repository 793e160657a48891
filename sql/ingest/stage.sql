-- Stage one spec source file's typed rows (registered frame `typed`: line_number, the spec's
-- columns, text, reason). `_key` packs the key columns ($keys), `_row` every spec column
-- ($columns): names are bound values matched by COLUMNS, never pasted into the statement.
CREATE OR REPLACE TEMP TABLE staged AS
SELECT
    *,
    CAST(NULL AS VARCHAR) AS dropped,
    struct_pack(*COLUMNS(lambda c: list_contains($keys, c))) AS _key,
    struct_pack(*COLUMNS(lambda c: list_contains($columns, c))) AS _row
FROM typed;
