-- Ratings the lake (or an earlier file of this run, $files) holds already: the same rating is
-- dropped as already in the lake; another rating for the same key is quarantined.
UPDATE staged AS s
SET
    dropped = CASE WHEN s.rating = l.rating THEN 'in_lake' END,
    reason = CASE WHEN s.rating <> l.rating THEN
        'key already in the lake with rating ' || l.rating
        || ' (' || l.source_file || ' line ' || l.line_number || ')' END
FROM read_parquet($files) AS l
WHERE s.reason IS NULL AND s.dropped IS NULL
    AND s.user_id = l.user_id AND s.movie_id = l.movie_id AND s.timestamp = l.timestamp;
