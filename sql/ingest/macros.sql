-- Helpers for the parse steps (run once per connection).
-- The delimiter a line looks separated by: the first of these (other than the spec's `sep`)
-- that splits `text` into `expected` fields, or NULL. `sep` 'whitespace' means runs of spaces
-- and tabs.
CREATE OR REPLACE TEMP MACRO likely_delimiter(text, expected, sep) AS
    CASE
        WHEN sep <> ',' AND len(string_split(text, ',')) = expected THEN 'comma-separated'
        WHEN sep <> chr(9) AND len(string_split(text, chr(9))) = expected THEN 'tab-separated'
        WHEN sep <> ';' AND len(string_split(text, ';')) = expected THEN 'semicolon-separated'
        WHEN sep <> '|' AND len(string_split(text, '|')) = expected THEN '''|''-separated'
        WHEN sep <> '::' AND len(string_split(text, '::')) = expected THEN '''::''-separated'
        WHEN sep NOT IN (' ', 'whitespace') AND len(string_split(text, ' ')) = expected
            THEN 'space-separated'
        WHEN sep <> 'whitespace'
            AND len(regexp_split_to_array(trim(text, ' ' || chr(9)), '[ \t]+')) = expected
            THEN 'whitespace-separated'
    END;
CREATE OR REPLACE TEMP MACRO delimiter_name(sep) AS
    CASE WHEN sep = 'whitespace' THEN 'whitespace' ELSE '''' || sep || '''' END;
-- A line with another field count than expected: say so, and name the delimiter it looks
-- separated by, if any.
CREATE OR REPLACE TEMP MACRO field_count_problem(text, n, expected, sep) AS
    CASE WHEN n <> expected THEN
        'expected ' || expected || ' fields separated by ' || delimiter_name(sep)
        || ', found ' || n
        || coalesce(
            '; the line looks ' || likely_delimiter(text, expected, sep) || ', the spec says '
            || delimiter_name(sep),
            ''
        )
    END;
-- The fields of a line: split on `sep`, or on runs of spaces and tabs (`sep` 'whitespace',
-- leading and trailing ones ignored).
CREATE OR REPLACE TEMP MACRO split_fields(text, sep) AS
    CASE WHEN sep = 'whitespace' THEN regexp_split_to_array(trim(text, ' ' || chr(9)), '[ \t]+')
        ELSE string_split(text, sep) END;
-- The text of field `idx` of a parsed row, trimmed; NULL for a null marker (`nulls`).
CREATE OR REPLACE TEMP MACRO field_text(fields, idx, nulls) AS
    CASE WHEN NOT list_contains(nulls::VARCHAR[], fields[idx]) THEN trim(fields[idx]) END;
-- The problem of a field whose text `s` did not cast (`ok` false): column `name`, what it is
-- not, and the text (40 characters at most).
CREATE OR REPLACE TEMP MACRO cast_problem(name, s, ok, what) AS
    CASE WHEN s IS NOT NULL AND NOT ok THEN name || ': ' || what || ' (''' || left(s, 40) || ''')'
    END;
