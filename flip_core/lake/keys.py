"""Whether integer key columns repeat a key: exact, packed into one sortable integer."""

from __future__ import annotations

import itertools
import operator
from typing import Any

import numpy as np
import numpy.typing as npt


def keys_repeat(columns: list[np.ndarray]) -> bool | None:
    """Whether some row repeats the key made of `columns` (integers); None if it cannot tell.

    The key is packed exactly into one integer (offsets by each column's minimum), then sorted;
    None when the value ranges are too wide to pack. A shorter key prefix is tried first when it
    can hold as many values as there are rows (one with fewer must repeat): if its rows are all
    distinct, so are the whole keys (e.g. ml-1m ratings: (user, movie) packs into int32 and sorts
    twice as fast as the int64 (user, movie, timestamp)).
    """
    ranges = [(int(column.min()), int(column.max())) for column in columns]
    spans = list(itertools.accumulate((high - low + 1 for low, high in ranges), operator.mul))
    if spans[-1] >= 1 << 63:
        return None
    rows = len(columns[0])
    prefix = next(n for n, span in enumerate(spans, 1) if span >= rows or n == len(columns))
    head, head_ranges = columns[:prefix], ranges[:prefix]
    if prefix < len(columns) and not _packed_repeat(head, head_ranges, spans[prefix - 1]):
        return False
    return _packed_repeat(columns, ranges, spans[-1])


def _packed_repeat(columns: list[np.ndarray], ranges: list[tuple[int, int]], span: int) -> bool:
    """Whether two rows of `columns` are equal, packed into one int32 (`span` < 2**31) or int64."""
    narrow = span < 1 << 31
    dtype = np.int32 if narrow else np.int64
    packed: npt.NDArray[np.signedinteger[Any]] = np.zeros(len(columns[0]), dtype=dtype)
    for column, (low, high) in zip(columns, ranges, strict=True):
        packed *= high - low + 1
        # narrow: each column's width is < 2**31, so `column - low` fits int32 (exactly, even
        # when computed in int32 with wrap-around); else it is taken in int64
        packed += column - low if narrow else column.astype(np.int64) - low
    packed.sort()
    return bool((packed[1:] == packed[:-1]).any())
