-- Line and join key columns ($keys) of the staged rows still going in: the foreign-key check.
SELECT line_number, COLUMNS(lambda c: list_contains($keys, c))
FROM staged
WHERE reason IS NULL AND dropped IS NULL
ORDER BY line_number;
