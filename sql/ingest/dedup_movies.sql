-- Inside one source file the first line of each movie_id wins: later identical lines are dropped
-- as duplicates, later lines with another title or genres are quarantined.
UPDATE staged AS s
SET
    dropped = CASE WHEN d.same THEN 'duplicate' END,
    reason = CASE WHEN NOT d.same THEN
        'duplicate movie_id of line ' || d.first_line || ' with another title or genres' END
FROM (
    SELECT
        s2.line_number,
        k.first_line,
        (s2.title, s2.genres) = (f.title, f.genres) AS same
    FROM (
        SELECT movie_id, min(line_number) AS first_line
        FROM staged WHERE reason IS NULL GROUP BY movie_id HAVING count(*) > 1
    ) AS k
    JOIN staged AS f ON f.line_number = k.first_line
    JOIN staged AS s2 ON s2.movie_id = k.movie_id AND s2.line_number > k.first_line
    WHERE s2.reason IS NULL
) AS d
WHERE s.line_number = d.line_number;
