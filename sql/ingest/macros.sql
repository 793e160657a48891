-- Helpers for the parse steps (run once per connection).
CREATE OR REPLACE TEMP MACRO field_count_problem(text, n, expected, sep) AS
    CASE WHEN n <> expected THEN
        'expected ' || expected || ' fields separated by ''' || sep || ''', found ' || n
        || CASE WHEN n = 1 AND regexp_matches(text, '[,;\t|:]') THEN ' (wrong delimiter?)' ELSE '' END
    END;
