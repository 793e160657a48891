"""Foreign keys from a dataset spec's joins: which rows refer to a key the joined table lacks, and
why (the key was never there, the table is empty, or this run quarantined the key's row), and
why a joined table is empty (its file is empty or missing, or every row was quarantined)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flip_core.spec import DatasetSpec, JoinSpec

_BITMAP_SPAN = 1 << 26  # widest integer key range checked with a lookup table


def references(spec: DatasetSpec) -> dict[str, list[JoinSpec]]:
    """Per table, the joins whose key it holds: the rows of that table must name a known key.

    A join's key is read from the first of the events and the tables joined before it that has
    every key column (a join may refer to a table joined earlier, not only to the events).
    """
    order = [spec.table(spec.events), *(spec.table(j.table) for j in spec.joins)]
    found: dict[str, list[JoinSpec]] = {}
    for i, join in enumerate(spec.joins):
        holder = next(t for t in order[: i + 1] if set(join.key) <= set(t.column_names))
        found.setdefault(holder.name, []).append(join)
    return found


def unknown(rows: pa.Table, keys: list[str], known: pa.Table) -> pa.Table:
    """The rows of `rows` whose `keys` are no row of `known` (the same columns), in input order.

    A row with a null key column refers to nothing and is not checked.
    """
    if any(rows.column(k).null_count for k in keys):
        rows = rows.filter(functools.reduce(pc.and_, [pc.is_valid(rows.column(k)) for k in keys]))
    if not known.num_rows or not rows.num_rows:
        return rows
    if len(keys) == 1 and pa.types.is_integer(rows.schema.field(keys[0]).type):
        values = _numpy(rows.column(keys[0]))
        present = _int_known(values, _numpy(known.column(keys[0])))
        return rows.filter(pa.array(~present))
    wanted = known.select(keys).cast(rows.select(keys).schema).group_by(keys).aggregate([])
    missing = rows.append_column("_row", pa.array(np.arange(rows.num_rows)))
    missing = missing.join(wanted, keys=keys, join_type="left anti")
    return missing.sort_by("_row").drop_columns(["_row"])


def reasons(
    missing: pa.Table, join: JoinSpec, key_order: list[str], empty: str | None, rejected: Rejected
) -> list[str]:
    """Why each row of `missing` (rows whose `join` key is unknown) cannot go in.

    `key_order`: the joined table's key columns, the order of `rejected`'s keys (the key's
    quarantined rows of this run: "users.dat line 4: <reason>"). `empty`: why the joined table
    has no row at all ("users.dat is empty, so users has no row"), None when it has rows.
    """
    values = [missing.column(k).to_pylist() for k in key_order]
    out = []
    for key in zip(*values, strict=True):
        named = ", ".join(f"{c} {_text(v)}" for c, v in zip(key_order, key, strict=True))
        cause = rejected.get(key)
        if cause is not None:
            out.append(f"{named} was quarantined ({cause})")
        elif empty is not None:
            out.append(empty)
        else:
            out.append(f"{named} is not a row of {join.table}")
    return out


Rejected = dict[tuple[Any, ...], str]


def empty_reason(table: str, globs: list[str], sources: list[tuple[str, int]]) -> str:
    """Why `table` has no row, from this run's `sources` of it (file name, rows read): no file
    matched its `globs`, its files are empty, or every row of them was quarantined."""
    names = ", ".join(name for name, _ in sources)
    if not sources:
        matched = " or ".join(repr(g) for g in globs)
        return f"no file of {table} in the raw folder (none matches {matched})"
    if all(rows == 0 for _, rows in sources):
        return f"{names} {'is' if len(sources) == 1 else 'are'} empty"
    return f"every row of {names} was quarantined"


def rejected_keys(rows: pa.Table, keys: list[str], source: str, into: Rejected) -> None:
    """Add the quarantined `rows` (key columns, line_number, reason) whose key parsed to `into`
    (the first row of a key wins)."""
    columns = [rows.column(k).to_pylist() for k in keys]
    lines, texts = rows.column("line_number").to_pylist(), rows.column("reason").to_pylist()
    for *key, line, reason in zip(*columns, lines, texts, strict=True):
        if None not in key:
            into.setdefault(tuple(key), f"{source} line {line}: {reason}")


def _int_known(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Per value, whether it is in `known` (integers): a lookup table when the range is narrow."""
    low = min(int(values.min()), int(known.min()))
    high = max(int(values.max()), int(known.max()))
    if high - low >= _BITMAP_SPAN:
        return np.isin(values, known)
    table = np.zeros(high - low + 1, dtype=bool)
    table[known.astype(np.int64) - low] = True
    return table[values.astype(np.int64) - low]


def _numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return np.asarray(array)


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
