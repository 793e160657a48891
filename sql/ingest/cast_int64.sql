-- Field $index of every parsed row as BIGINT, in line order: NULL for a null marker ($nulls) or a
-- row that did not parse; `problem` names column $name when the text is not an integer, or one
-- out of range for int64.
WITH raw AS (
    SELECT
        line_number,
        CASE WHEN NOT list_contains($nulls::VARCHAR[], fields[$index]) THEN trim(fields[$index]) END
            AS s
    FROM parsed
), checked AS (
    SELECT line_number, s, coalesce(
        regexp_full_match(s, '[+-]?[0-9]+') AND TRY_CAST(s AS BIGINT) IS NOT NULL, false
    ) AS ok
    FROM raw
)
SELECT
    CASE WHEN ok THEN TRY_CAST(s AS BIGINT) END AS v,
    CASE WHEN s IS NOT NULL AND NOT ok THEN
        $name || CASE WHEN regexp_full_match(s, '[+-]?[0-9]+') THEN ': out of range for int64 ('''
            ELSE ': not an integer (''' END || left(s, 40) || ''')' END AS problem
FROM checked
ORDER BY line_number;
