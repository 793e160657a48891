-- Field $index of every parsed row as an integer within [$low, $high] (the column type's range,
-- $type: int32 or int64), in line order; NULL for a null marker ($nulls) or a row that did not
-- parse; `problem` names column $name when the text is not an integer or out of range.
SELECT
    CASE WHEN ok THEN TRY_CAST(s AS BIGINT) END AS v,
    cast_problem($name, s, ok, CASE WHEN digits THEN 'out of range for ' || $type
        ELSE 'not an integer' END) AS problem
FROM (
    SELECT line_number, s, digits,
        coalesce(digits AND TRY_CAST(s AS BIGINT) BETWEEN $low AND $high, false) AS ok
    FROM (
        SELECT line_number, s, coalesce(regexp_full_match(s, '[+-]?[0-9]+'), false) AS digits
        FROM (SELECT line_number, field_text(fields, $index, $nulls) AS s FROM parsed)
    )
)
ORDER BY line_number;
