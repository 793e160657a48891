-- Inside one source file the first line of each user_id wins: later identical lines are dropped
-- as duplicates, later lines with other attributes are quarantined.
UPDATE staged AS s
SET
    dropped = CASE WHEN d.same THEN 'duplicate' END,
    reason = CASE WHEN NOT d.same THEN
        'duplicate user_id of line ' || d.first_line || ' with other attributes' END
FROM (
    SELECT
        s2.line_number,
        k.first_line,
        (s2.gender, s2.age, s2.occupation, s2.zip) = (f.gender, f.age, f.occupation, f.zip) AS same
    FROM (
        SELECT user_id, min(line_number) AS first_line
        FROM staged WHERE reason IS NULL GROUP BY user_id HAVING count(*) > 1
    ) AS k
    JOIN staged AS f ON f.line_number = k.first_line
    JOIN staged AS s2 ON s2.user_id = k.user_id AND s2.line_number > k.first_line
    WHERE s2.reason IS NULL
) AS d
WHERE s.line_number = d.line_number;
