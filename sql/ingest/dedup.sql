-- Inside one spec source file the first line of each key wins: later lines with the same values
-- are dropped as duplicates, later lines with other values are quarantined.
UPDATE staged AS s
SET
    dropped = CASE WHEN d.same THEN 'duplicate' END,
    reason = CASE WHEN NOT d.same THEN
        'duplicate key of line ' || d.first_line || ' with other values' END
FROM (
    SELECT
        s2.line_number,
        k.first_line,
        s2._row IS NOT DISTINCT FROM f._row AS same
    FROM (
        SELECT _key, min(line_number) AS first_line
        FROM staged WHERE reason IS NULL GROUP BY _key HAVING count(*) > 1
    ) AS k
    JOIN staged AS f ON f.line_number = k.first_line
    JOIN staged AS s2 ON s2._key = k._key AND s2.line_number > k.first_line
    WHERE s2.reason IS NULL
) AS d
WHERE s.line_number = d.line_number;
