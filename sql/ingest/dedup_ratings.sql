-- Inside one source file the first line of each (user_id, movie_id, timestamp) wins: later
-- identical lines are dropped as duplicates, later lines with another rating are quarantined.
UPDATE staged AS s
SET
    dropped = CASE WHEN s.rating = d.first_rating THEN 'duplicate' END,
    reason = CASE WHEN s.rating <> d.first_rating THEN
        'duplicate key of line ' || d.first_line || ' with a different rating' END
FROM (
    SELECT k.*, f.rating AS first_rating
    FROM (
        SELECT user_id, movie_id, timestamp, min(line_number) AS first_line
        FROM staged
        WHERE reason IS NULL
        GROUP BY user_id, movie_id, timestamp
        HAVING count(*) > 1
    ) AS k
    JOIN staged AS f ON f.line_number = k.first_line
) AS d
WHERE s.reason IS NULL
    AND s.user_id = d.user_id AND s.movie_id = d.movie_id AND s.timestamp = d.timestamp
    AND s.line_number > d.first_line;
