"""The pandera schema of a spec table's rows (nulls, ranges, allowed values, patterns, key), and
the readable reason of each row it rejects."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

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
    if column.min is not None and column.max is not None:
        checks.append(pa.Check.in_range(column.min, column.max))
    elif column.min is not None:
        checks.append(pa.Check.ge(column.min))
    elif column.max is not None:
        checks.append(pa.Check.le(column.max))
    if column.allowed is not None:
        checks.append(pa.Check.isin(column.allowed))
    if column.pattern is not None:
        checks.append(pa.Check.str_matches(f"(?:{column.pattern})$"))
    return checks


def failure_reasons(
    schema: pa.DataFrameSchema | type[pa.DataFrameModel], frame: pd.DataFrame
) -> dict[int, str]:
    """Validate `frame` lazily; map each failing row's index label to a readable reason.

    Raises `SchemaErrors` when a failure is not tied to rows (a wrong column or dtype): that is a
    bug upstream, not bad input. `frame` is validated in place (no copy): the lake models coerce
    nothing, so it is left as it was.
    """
    try:
        schema.validate(frame, lazy=True, inplace=True)
    except SchemaErrors as exc:
        return _reasons(exc.failure_cases)
    return {}


def _reasons(cases: pd.DataFrame) -> dict[int, str]:
    if cases["index"].isna().any():
        bad = cases[cases["index"].isna()].head(3).to_dict("records")
        raise ValueError(f"lake schema violated at column level (not row level): {bad}")
    reasons: dict[int, list[str]] = {}
    parts = (cases[c] for c in ("index", "column", "check", "failure_case"))
    for index, column, check, value in zip(*parts, strict=True):
        reasons.setdefault(int(index), []).append(_describe(column, str(check), value))
    return {index: "; ".join(dict.fromkeys(parts)) for index, parts in reasons.items()}


def _describe(column: Any, check: str, value: Any) -> str:
    name = column if isinstance(column, str) else "row"
    if isinstance(value, np.generic):
        value = value.item()
    if check.startswith(("field_uniqueness", "multiple_fields_uniqueness")):
        return "duplicate key"
    return f"{name}: {check} failed (got {value!r})"
