-- Split one batch of numbered lines (view `batch`, each line with its line end) into typed
-- ratings `user_id::movie_id::rating::timestamp`. A line that does not parse keeps its text and
-- gets a reason. Fast path: one regex match decides that a line is four integers.
INSERT INTO staged
WITH fields AS (
    SELECT
        line_number,
        issue,
        line,
        issue IS NULL
            AND regexp_full_match(line, '-?[0-9]+::-?[0-9]+::-?[0-9]+::-?[0-9]+\r?\n?') AS simple,
        string_split(line, '::') AS f
    FROM batch
), typed AS (
    SELECT
        *,
        TRY_CAST(f[1] AS INTEGER) AS user_id,
        TRY_CAST(f[2] AS INTEGER) AS movie_id,
        TRY_CAST(f[3] AS INTEGER) AS rating,
        TRY_CAST(f[4] AS BIGINT) AS timestamp
    FROM fields
), checked AS (
    SELECT
        *,
        CASE
            WHEN simple AND user_id IS NOT NULL AND movie_id IS NOT NULL
                AND rating IS NOT NULL AND timestamp IS NOT NULL THEN NULL
            ELSE coalesce(
                issue,
                field_count_problem(rtrim(line, chr(13) || chr(10)), len(f), 4, '::'),
                nullif(concat_ws('; ',
                    int_problem('user_id', f[1], user_id),
                    int_problem('movie_id', f[2], movie_id),
                    int_problem('rating', f[3], rating),
                    int_problem('timestamp', rtrim(f[4], chr(13) || chr(10)), timestamp)
                ), ''),
                'malformed line'
            )
        END AS reason
    FROM typed
)
SELECT
    line_number,
    CASE WHEN reason IS NULL THEN user_id END,
    CASE WHEN reason IS NULL THEN movie_id END,
    CASE WHEN reason IS NULL THEN rating END,
    CASE WHEN reason IS NULL THEN timestamp END,
    CASE WHEN reason IS NOT NULL THEN left(rtrim(line, chr(13) || chr(10)), 1000) END,
    reason,
    NULL
FROM checked;
