-- Field $index of every parsed row as text, in line order: NULL for a null marker ($nulls) or a
-- row that did not parse. Text is kept as written (not trimmed); it cannot fail.
SELECT
    CASE WHEN NOT list_contains($nulls::VARCHAR[], fields[$index]) THEN fields[$index] END AS v,
    CAST(NULL AS VARCHAR) AS problem
FROM parsed
ORDER BY line_number;
