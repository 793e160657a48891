-- Field $index of every parsed row as DOUBLE, in line order: NULL for a null marker ($nulls) or a
-- row that did not parse; `problem` names column $name when the text is not a number.
WITH raw AS (
    SELECT
        line_number,
        CASE WHEN NOT list_contains($nulls::VARCHAR[], fields[$index]) THEN trim(fields[$index]) END
            AS s
    FROM parsed
), checked AS (
    SELECT line_number, s, coalesce(
        isfinite(TRY_CAST(s AS DOUBLE)), false
    ) AS ok
    FROM raw
)
SELECT
    CASE WHEN ok THEN TRY_CAST(s AS DOUBLE) END AS v,
    CASE WHEN s IS NOT NULL AND NOT ok THEN
        $name || ': not a number (''' || left(s, 40) || ''')' END AS problem
FROM checked
ORDER BY line_number;
