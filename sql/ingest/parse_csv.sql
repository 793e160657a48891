-- Split one batch of numbered lines (view `batch`: line_number, line, issue, quoted) on the bound
-- $delimiter. `quoted` holds the fields of lines that use the quote character (split in Python);
-- a line with another field count than $expected, or a byte problem (`issue`), gets a reason.
INSERT INTO parsed
WITH split AS (
    SELECT
        line_number,
        issue,
        quoted,
        CASE WHEN line_number = 1 THEN ltrim(rtrim(line, chr(13) || chr(10)), chr(65279))
            ELSE rtrim(line, chr(13) || chr(10)) END AS text
    FROM batch
), fields AS (
    SELECT line_number, issue, text, coalesce(quoted, split_fields(text, $delimiter)) AS f
    FROM split
)
SELECT
    line_number,
    CASE WHEN issue IS NULL AND len(f) = $expected THEN f END,
    left(text, 1000),
    coalesce(issue, field_count_problem(text, len(f), $expected, $delimiter))
FROM fields;
