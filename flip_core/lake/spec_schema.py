"""The pandera schema of a spec table's rows: nulls, ranges, allowed values, patterns, key."""

from __future__ import annotations

import pandera.pandas as pa

from flip_core.spec import ColumnSpec, TableSpec


def spec_schema(table: TableSpec, key_checked: bool = True) -> pa.DataFrameSchema:
    """The pandera schema of a table's rows (its columns), indexed by line.

    Types are enforced by the SQL casts already; this checks nulls, ranges, allowed values and
    patterns. `key_checked=False` adds the key uniqueness check (whole-lake validation; the
    ingest's SQL dedup step makes keys unique and tells duplicates from conflicts).
    """
    columns = {
        c.name: pa.Column(None, checks=_checks(c), nullable=c.nullable) for c in table.columns
    }
    return pa.DataFrameSchema(
        columns, strict=True, unique=None if key_checked else table.key_columns
    )


def _checks(column: ColumnSpec) -> list[pa.Check]:
    checks = []
    if column.min is not None:
        checks.append(pa.Check.ge(column.min))
    if column.max is not None:
        checks.append(pa.Check.le(column.max))
    if column.allowed is not None:
        checks.append(pa.Check.isin(column.allowed))
    if column.pattern is not None:
        checks.append(pa.Check.str_matches(f"(?:{column.pattern})$"))
    return checks
