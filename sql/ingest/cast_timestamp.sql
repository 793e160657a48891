-- Field $index of every parsed row as TIMESTAMP, in line order; NULL for a null marker ($nulls) or
-- a row that did not parse; `problem` names column $name when the text is not a timestamp.
SELECT
    CASE WHEN ok THEN TRY_CAST(s AS TIMESTAMP) END AS v,
    cast_problem($name, s, ok, 'not a timestamp') AS problem
FROM (
    SELECT line_number, s, coalesce(TRY_CAST(s AS TIMESTAMP) IS NOT NULL, false) AS ok
    FROM (SELECT line_number, field_text(fields, $index, $nulls) AS s FROM parsed)
)
ORDER BY line_number;
