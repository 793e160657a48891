-- Add fast-parsed ratings (view `typed`: user_id, movie_id, rating, timestamp, line_number) to the
-- staged source, when the file as a whole needs the exact steps (dedup, lake match, reasons).
INSERT INTO staged
SELECT line_number, user_id, movie_id, rating, timestamp, NULL, NULL, NULL
FROM typed;
