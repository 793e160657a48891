"""Check a dataset-spec lake: manifest and files agree, every row passes the spec's rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flip_core.config import DuckDBConfig
from flip_core.lake import foreign
from flip_core.lake.duck import open_session
from flip_core.lake.ingest import lake_columns
from flip_core.lake.manifest import load_manifest, table_files
from flip_core.lake.spec_schema import failure_reasons, spec_schema
from flip_core.layout import DataLayout
from flip_core.spec import DatasetSpec, JoinSpec, TableSpec
from flip_core.sql import load_sql

_SHOWN = 5


class LakeValidationError(ValueError):
    """The lake breaks its contract; the message lists the first problems."""


@dataclass
class LakeReport:
    """Rows per table and the problems found (empty when the lake is valid)."""

    lake_dir: Path
    rows: dict[str, int]
    files: dict[str, int]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_spec_lake(
    data_root: Path,
    spec: DatasetSpec,
    duckdb_config: DuckDBConfig | None = None,
    strict: bool = True,
) -> LakeReport:
    """Validate the lake of `spec`; with `strict`, raise `LakeValidationError` on problems.

    Checks, per table: every file listed in the manifest and vice versa, row counts, the spec's
    column rules and one row per key across the whole table; and every join key of a row is a
    row of the joined table.
    """
    config = duckdb_config or DuckDBConfig()
    root = DataLayout(data_root).lake(spec.name)
    manifest = load_manifest(root, spec.name)
    report = LakeReport(lake_dir=root, rows={}, files={})
    listed = manifest.listed_files()
    readable = {
        table.name
        for table in spec.tables
        if _check_table(root, table, listed, manifest.rows(table.name), config, report)
    }
    for holder, joins in foreign.references(spec).items():
        for join in joins:
            if {holder, join.table} <= readable:
                _check_join(root, holder, join, report)
    if strict and report.problems:
        shown = "; ".join(report.problems[:_SHOWN])
        raise LakeValidationError(f"lake {root} is invalid ({len(report.problems)}): {shown}")
    return report


def _check_table(
    root: Path,
    table: TableSpec,
    listed: set[str],
    manifest_rows: int,
    config: DuckDBConfig,
    report: LakeReport,
) -> bool:
    """Check one table's files, columns and rows; whether it has files with the spec's columns."""
    name = table.name
    report.rows[name] = 0
    files = table_files(root, name)
    report.files[name] = len(files)
    for path in files:
        if path.relative_to(root).as_posix() not in listed:
            report.problems.append(f"{path}: not listed in the manifest (orphan)")
    for rel in sorted(f for f in listed if f.startswith(f"{name}/")):
        if not (root / rel).is_file():
            report.problems.append(f"{root / rel}: listed in the manifest but missing")
    if not files:
        report.problems.append(f"{name}: no Parquet files in {root / name}")
        return False
    if (found := pq.read_schema(files[0]).names) != lake_columns(table):
        report.problems.append(f"{name}: columns {found}, the spec gives {lake_columns(table)}")
        return False
    _check_rows(table, files, config, report)
    if report.rows[name] != manifest_rows:
        report.problems.append(
            f"{name}: {report.rows[name]:,} rows in files, {manifest_rows:,} in the manifest"
        )
    return True


def _check_rows(
    spec: TableSpec, files: list[Path], config: DuckDBConfig, report: LakeReport
) -> None:
    with open_session(config) as con:
        params = {"files": [str(p) for p in files], "columns": spec.column_names}
        frame = con.execute(load_sql("ingest/lake_rows"), params).df()
    report.rows[spec.name] = len(frame)
    located = frame.set_index("where")
    reasons = failure_reasons(spec_schema(spec, key_checked=False), located.reset_index(drop=True))
    for position, reason in list(reasons.items())[:_SHOWN]:
        report.problems.append(f"{spec.name} {located.index[position]}: {reason}")
    if len(reasons) > _SHOWN:
        report.problems.append(f"{spec.name}: {len(reasons) - _SHOWN} more rows fail validation")


def _check_join(root: Path, holder: str, join: JoinSpec, report: LakeReport) -> None:
    """Rows of `holder` whose `join` key is no row of the joined table."""
    rows = _read(table_files(root, holder), [*join.key, "source_file", "line_number"])
    known = _read(table_files(root, join.table), join.key)
    missing = foreign.unknown(rows, join.key, known)
    shown = missing.slice(0, _SHOWN)
    empty = None if known.num_rows else f"{join.table} is empty"
    reasons = foreign.reasons(shown, join, join.key, empty, {})
    sources, lines = (
        shown.column("source_file").to_pylist(),
        shown.column("line_number").to_pylist(),
    )
    for source, line, reason in zip(sources, lines, reasons, strict=True):
        report.problems.append(f"{holder} {source} line {line}: {reason}")
    if missing.num_rows > _SHOWN:
        report.problems.append(
            f"{holder}: {missing.num_rows - _SHOWN} more rows name no row of {join.table}"
        )


def _read(files: list[Path], columns: list[str]) -> pa.Table:
    """`columns` of the lake files `files`."""
    tables = [pq.read_table(f, columns=columns) for f in files]
    return pa.concat_tables(tables, promote_options="permissive")
