-- Split one batch of numbered lines (view `batch`) into typed users; a line that does not parse
-- keeps its text and gets a reason. Fields are separated by '::'.
INSERT INTO staged
WITH split AS (
    SELECT line_number, issue, rtrim(line, chr(13) || chr(10)) AS text
    FROM batch
), fields AS (
    SELECT line_number, issue, text, string_split(text, '::') AS f FROM split
), typed AS (
    SELECT
        line_number, issue, text, f,
        TRY_CAST(f[1] AS INTEGER) AS user_id,
        TRY_CAST(f[3] AS INTEGER) AS age,
        TRY_CAST(f[4] AS INTEGER) AS occupation
    FROM fields
), checked AS (
    SELECT
        *,
        coalesce(
            issue,
            field_count_problem(text, len(f), 5, '::'),
            nullif(concat_ws('; ',
                int_problem('user_id', f[1], user_id),
                int_problem('age', f[3], age),
                int_problem('occupation', f[4], occupation)
            ), '')
        ) AS reason
    FROM typed
)
SELECT
    line_number,
    CASE WHEN reason IS NULL THEN user_id END,
    CASE WHEN reason IS NULL THEN f[2] END,
    CASE WHEN reason IS NULL THEN age END,
    CASE WHEN reason IS NULL THEN occupation END,
    CASE WHEN reason IS NULL THEN f[5] END,
    CASE WHEN reason IS NOT NULL THEN left(text, 1000) END,
    reason,
    NULL
FROM checked;
