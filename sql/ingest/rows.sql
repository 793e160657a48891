-- The parsed rows of one spec source file, in line order (line, raw text, parse problem).
SELECT line_number, text, reason FROM parsed ORDER BY line_number;
