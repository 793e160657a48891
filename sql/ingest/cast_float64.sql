-- Field $index of every parsed row as DOUBLE, in line order; NULL for a null marker ($nulls) or
-- a row that did not parse; `problem` names column $name when the text is not a number.
SELECT
    CASE WHEN ok THEN TRY_CAST(s AS DOUBLE) END AS v,
    cast_problem($name, s, ok, 'not a number') AS problem
FROM (
    SELECT line_number, s, coalesce(isfinite(TRY_CAST(s AS DOUBLE)), false) AS ok
    FROM (SELECT line_number, field_text(fields, $index, $nulls) AS s FROM parsed)
)
ORDER BY line_number;
