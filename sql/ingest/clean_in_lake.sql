-- How many fast-parsed rows (view `clean`) have a key ($keys) the lake ($files) holds already.
SELECT count(*)
FROM (SELECT struct_pack(*COLUMNS(lambda c: list_contains($keys, c))) AS k FROM clean) AS c
SEMI JOIN (
    SELECT struct_pack(*COLUMNS(lambda c: list_contains($keys, c))) AS k FROM read_parquet($files)
) AS l ON c.k = l.k;
