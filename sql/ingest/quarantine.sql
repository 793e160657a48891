-- Write the quarantined rows of one source file ($source, content hash $sha, lake table $table)
-- to $path, leaving out the lines an earlier run recorded for the same content (registered frame
-- `recorded`: line_number): the quarantine holds one row per (source sha256, line).
COPY (
    SELECT
        $table AS table_name,
        $source AS source_file,
        $sha AS source_sha256,
        line_number,
        reason,
        text AS raw_line
    FROM staged
    WHERE reason IS NOT NULL AND line_number NOT IN (SELECT line_number FROM recorded)
    ORDER BY line_number
) TO $path (FORMAT parquet);
