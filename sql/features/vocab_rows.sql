-- The fitted vocabulary, for the FeatureMap: field, value, train count, id (NULL below min-count).
SELECT field, value, count, CAST(id AS INTEGER) AS id
FROM feature_vocab
ORDER BY field, id NULLS LAST, value;
