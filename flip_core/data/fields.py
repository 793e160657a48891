"""One field's two views from raw columns: its ID value (vocabulary key) and its text.

Shared by the features stage and by scoring, so a model meets served rows exactly as it met its
training rows. A field (`flip_core.spec.FieldSpec`) is categorical (the value as it is), multi-
valued (a separator-joined string or a set of 0/1 indicator columns; the ID value is the values
joined in source order, the text lists them) or numeric (train-fitted quantile bins for the ID
value; the text shows the number).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flip_core.spec import MULTI_JOIN, FieldSpec

UNKNOWN = "unknown"  # the text of a missing value
NONE = "none"  # the text of a multi-valued field with no value


def raw_values(field: FieldSpec, columns: Mapping[str, pa.Array]) -> pa.Array:
    """The field's raw value per row: the source column, or the names of the indicator columns
    that are 1, joined by '|' ('' when none is)."""
    if field.columns is None:
        return _combined(columns[field.source_columns[0]])
    names = []
    for name in field.columns:
        on = pc.fill_null(pc.not_equal(pc.cast(_combined(columns[name]), pa.int64()), 0), False)
        names.append(pc.if_else(on, pa.scalar(name), pa.scalar(None, pa.string())))
    # Nulls become empty parts, then the empty parts' separators go (pyarrow's "skip" null
    # handling drops rows whose parts are all null).
    joined = pc.binary_join_element_wise(
        *names, MULTI_JOIN, null_handling="replace", null_replacement=""
    )
    return pc.utf8_trim(pc.replace_substring_regex(joined, r"\|{2,}", MULTI_JOIN), MULTI_JOIN)


def id_values(field: FieldSpec, raw: pa.Array, bins: Sequence[float] | None) -> pa.Array:
    """The vocabulary key of every row (string; null when the value is missing)."""
    if field.kind == "numeric":
        if bins is None:
            raise ValueError(f"field {field.name!r} is numeric but has no fitted bins")
        values = pc.cast(raw, pa.float64()).to_numpy(zero_copy_only=False)
        bucket = np.searchsorted(np.asarray(bins, dtype=np.float64), values, side="right")
        keys = pa.array([f"bin{b}" for b in bucket.tolist()], pa.string())
        return pc.if_else(pc.is_null(raw), pa.scalar(None, pa.string()), keys)
    return pc.cast(raw, pa.string())


def fit_bins(field: FieldSpec, train_raw: pa.Array) -> list[float]:
    """Inner edges of `field.bins` quantile bins over the train values (duplicates merged)."""
    values = pc.drop_null(pc.cast(train_raw, pa.float64())).to_numpy(zero_copy_only=False)
    if len(values) == 0 or field.bins is None:
        return []
    edges = np.quantile(values, np.linspace(0, 1, field.bins + 1)[1:-1])
    return sorted({float(e) for e in edges})


def readable_value(field: FieldSpec, raw: Any) -> str:
    """The text shown for one raw value: mapped through `values`, multi-values listed."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return UNKNOWN
    if field.kind == "multi":
        separator = field.separator if field.separator is not None else MULTI_JOIN
        parts = [p for p in str(raw).split(separator) if p.strip()]
        return field.text_separator.join(_mapped(field, p) for p in parts) or NONE
    return _mapped(field, raw)


def _mapped(field: FieldSpec, raw: Any) -> str:
    key = _key(raw)
    if field.values is not None and key in field.values:
        return field.values[key]
    return key


def _key(raw: Any) -> str:
    """A raw value's string form: 25.0 (from JSON/NaN-able columns) is '25', text stripped."""
    if isinstance(raw, float | np.floating):
        value = float(raw)
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(raw).strip()


def _combined(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
