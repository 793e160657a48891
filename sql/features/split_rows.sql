-- The encoded rows of one split, in row order.
SELECT * EXCLUDE (split)
FROM encoded_rows
WHERE split = $split
ORDER BY row_number;
