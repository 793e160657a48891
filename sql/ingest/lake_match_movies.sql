-- Movies the lake ($files) holds already: an identical row is dropped (unchanged); a row with
-- another title or genres is quarantined, since the lake keeps one version per movie_id.
UPDATE staged AS s
SET
    dropped = CASE WHEN d.same THEN 'in_lake' END,
    reason = CASE WHEN NOT d.same THEN
        'movie_id ' || s.movie_id || ' is in the lake with another title or genres ('
        || d.lake_row || '); the lake keeps the first version' END
FROM (
    SELECT
        s2.line_number,
        (s2.title, s2.genres) = (l.title, l.genres) AS same,
        concat_ws('::', l.movie_id, l.title, l.genres) AS lake_row
    FROM staged AS s2
    JOIN read_parquet($files) AS l ON s2.movie_id = l.movie_id
    WHERE s2.reason IS NULL AND s2.dropped IS NULL
) AS d
WHERE s.line_number = d.line_number;
