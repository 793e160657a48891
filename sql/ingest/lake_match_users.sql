-- Users the lake ($files) holds already: an identical row is dropped (unchanged); a row with other
-- attributes is quarantined, since the lake keeps one version per user_id (the first).
UPDATE staged AS s
SET
    dropped = CASE WHEN d.same THEN 'in_lake' END,
    reason = CASE WHEN NOT d.same THEN
        'user_id ' || s.user_id || ' is in the lake with other attributes ('
        || d.lake_row || '); the lake keeps the first version' END
FROM (
    SELECT
        s2.line_number,
        (s2.gender, s2.age, s2.occupation, s2.zip) = (l.gender, l.age, l.occupation, l.zip) AS same,
        concat_ws('::', l.user_id, l.gender, l.age, l.occupation, l.zip) AS lake_row
    FROM staged AS s2
    JOIN read_parquet($files) AS l ON s2.user_id = l.user_id
    WHERE s2.reason IS NULL AND s2.dropped IS NULL
) AS d
WHERE s.line_number = d.line_number;
