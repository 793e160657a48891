-- Sort the labelled rows of one protocol and cut them into splits.
-- Input: registered table `feature_input` (_row, _time, _user, _item, source_file, line_number;
-- _user/_item are NULL when the dataset has no user/item field).
-- Parameters: $order ('time' | 'random' | 'file'), $seed, $train_fraction, $valid_fraction.
-- Output: _row, row_number (1-based, protocol order), split; in protocol order.
WITH ordered AS (
    SELECT
        _row,
        row_number() OVER (
            ORDER BY
                CASE WHEN $order = 'time' THEN _time END,
                CASE WHEN $order = 'random'
                    THEN md5_number(concat_ws(':', $seed, _user, _item, _time)) END,
                CASE WHEN $order = 'file' THEN source_file END,
                CASE WHEN $order = 'file' THEN line_number END,
                _user, _item, _time, source_file, line_number
        ) AS row_number,
        count(*) OVER () AS total_rows
    FROM feature_input
)
SELECT
    _row,
    row_number,
    CASE
        WHEN row_number <= CAST(round(total_rows * $train_fraction) AS BIGINT) THEN 'train'
        WHEN row_number <= CAST(round(total_rows * ($train_fraction + $valid_fraction)) AS BIGINT)
            THEN 'valid'
        ELSE 'test'
    END AS split
FROM ordered
ORDER BY row_number;
