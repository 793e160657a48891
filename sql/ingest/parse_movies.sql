-- Split one batch of numbered lines (view `batch`) into typed movies; a line that does not parse
-- keeps its text and gets a reason. Fields are separated by '::'.
INSERT INTO staged
WITH split AS (
    SELECT line_number, issue, rtrim(line, chr(13) || chr(10)) AS text
    FROM batch
), fields AS (
    SELECT line_number, issue, text, string_split(text, '::') AS f FROM split
), typed AS (
    SELECT line_number, issue, text, f, TRY_CAST(f[1] AS INTEGER) AS movie_id FROM fields
), checked AS (
    SELECT
        *,
        coalesce(
            issue,
            field_count_problem(text, len(f), 3, '::'),
            int_problem('movie_id', f[1], movie_id)
        ) AS reason
    FROM typed
)
SELECT
    line_number,
    CASE WHEN reason IS NULL THEN movie_id END,
    CASE WHEN reason IS NULL THEN f[2] END,
    CASE WHEN reason IS NULL THEN f[3] END,
    CASE WHEN reason IS NOT NULL THEN left(text, 1000) END,
    reason,
    NULL
FROM checked;
