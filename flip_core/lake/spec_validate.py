"""Check a dataset-spec lake: manifest and files agree, every row passes the spec's rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from flip_core.config import DuckDBConfig
from flip_core.lake.duck import open_session
from flip_core.lake.ingest import lake_columns
from flip_core.lake.manifest import lake_dir, load_manifest, table_files
from flip_core.lake.spec_schema import failure_reasons, spec_schema
from flip_core.spec import DatasetSpec, TableSpec
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
    column rules and one row per key across the whole table.
    """
    config = duckdb_config or DuckDBConfig()
    root = lake_dir(data_root, spec.name)
    manifest = load_manifest(root, spec.name)
    report = LakeReport(lake_dir=root, rows={}, files={})
    listed = manifest.listed_files()
    for table in spec.tables:
        _check_table(root, table, listed, manifest.rows(table.name), config, report)
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
) -> None:
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
    elif (found := pq.read_schema(files[0]).names) != lake_columns(table):
        report.problems.append(f"{name}: columns {found}, the spec gives {lake_columns(table)}")
    else:
        _check_rows(table, files, config, report)
        if report.rows[name] != manifest_rows:
            report.problems.append(
                f"{name}: {report.rows[name]:,} rows in files, {manifest_rows:,} in the manifest"
            )


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
