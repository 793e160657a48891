-- Write the accepted users of one source file to one Parquet file ($path).
COPY (
    SELECT user_id, gender, age, occupation, zip
    FROM staged
    WHERE reason IS NULL AND dropped IS NULL
    ORDER BY user_id
) TO $path (FORMAT parquet, COMPRESSION snappy);
