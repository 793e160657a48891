-- Rows whose key the lake (or an earlier file of this run, $files) holds already: the same values
-- are dropped as already in the lake; other values are quarantined (the lake keeps the first).
UPDATE staged AS s
SET
    dropped = CASE WHEN s._row IS NOT DISTINCT FROM l._row THEN 'in_lake' END,
    reason = CASE WHEN s._row IS DISTINCT FROM l._row THEN
        'key already in the lake with other values (' || l.source_file || ' line '
        || l.line_number || ')' END
FROM (
    SELECT
        struct_pack(*COLUMNS(lambda c: list_contains($keys, c))) AS _key,
        struct_pack(*COLUMNS(lambda c: list_contains($columns, c))) AS _row,
        source_file,
        line_number
    FROM read_parquet($files)
) AS l
WHERE s.reason IS NULL AND s.dropped IS NULL AND s._key = l._key;
