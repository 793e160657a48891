-- Add fast-parsed movies (view `typed`: movie_id, title, genres, line_number) to the staged
-- source, when the file as a whole needs the exact steps (dedup, lake match, reasons).
INSERT INTO staged
SELECT line_number, movie_id, title, genres, NULL, NULL, NULL
FROM typed;
