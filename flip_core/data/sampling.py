"""Row subsets for capped runs: a seeded random sample (the default) or the first rows.

A split is sorted by time, so its first rows are its oldest and cover few users; a random sample
of the same size covers the split's users and items in proportion. The same `(n, max_rows, seed)`
always gives the same rows, so every model of a comparison is trained and scored on one subset.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Sample = Literal["random", "first"]


def subset_rows(n: int, max_rows: int | None, sample: Sample = "random", seed: int = 0) -> np.ndarray:
    """Sorted row numbers of the subset of `n` rows (all rows when `max_rows` is None or >= n)."""
    if max_rows is None or max_rows >= n:
        return np.arange(n, dtype=np.int64)
    if sample == "first":
        return np.arange(max_rows, dtype=np.int64)
    if sample != "random":
        raise ValueError(f"sample must be 'random' or 'first', got {sample!r}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_rows, replace=False)).astype(np.int64)
