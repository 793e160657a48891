"""Check a dataset-spec lake: manifest and files agree, every row passes the spec's rules."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from flip_core.config import DuckDBConfig
from flip_core.lake.duck import open_session
from flip_core.lake.manifest import lake_dir, load_manifest, table_files
from flip_core.lake.schemas import failure_reasons
from flip_core.lake.spec_ingest import lake_columns
from flip_core.lake.specs import DatasetSpec, spec_schema
from flip_core.lake.validate import LakeReport, LakeValidationError
from flip_core.sql import load_sql

_SHOWN = 5


def validate_spec_lake(
    data_root: Path,
    spec: DatasetSpec,
    duckdb_config: DuckDBConfig | None = None,
    strict: bool = True,
) -> LakeReport:
    """Validate the lake of `spec`; with `strict`, raise `LakeValidationError` on problems.

    Checks: every file listed in the manifest and vice versa, row counts, the spec's column rules,
    the 0/1 label and one row per key across the whole table.
    """
    root = lake_dir(data_root, spec.name)
    manifest = load_manifest(root, spec.name)
    table = spec.table
    report = LakeReport(lake_dir=root, rows={table: 0}, files={})
    files = table_files(root, table)
    report.files[table] = len(files)
    listed = manifest.listed_files()
    for path in files:
        if path.relative_to(root).as_posix() not in listed:
            report.problems.append(f"{path}: not listed in the manifest (orphan)")
    for rel in sorted(f for f in listed if f.startswith(f"{table}/")):
        if not (root / rel).is_file():
            report.problems.append(f"{root / rel}: listed in the manifest but missing")
    if not files:
        report.problems.append(f"{table}: no Parquet files in {root / table}")
    elif (found := pq.read_schema(files[0]).names) != lake_columns(spec):
        report.problems.append(f"{table}: columns {found}, the spec gives {lake_columns(spec)}")
    else:
        _check_rows(spec, files, duckdb_config or DuckDBConfig(), report)
        if report.rows[table] != manifest.rows(table):
            report.problems.append(
                f"{table}: {report.rows[table]:,} rows in files, "
                f"{manifest.rows(table):,} in the manifest"
            )
    if strict and report.problems:
        shown = "; ".join(report.problems[:_SHOWN])
        raise LakeValidationError(f"lake {root} is invalid ({len(report.problems)}): {shown}")
    return report


def _check_rows(
    spec: DatasetSpec, files: list[Path], config: DuckDBConfig, report: LakeReport
) -> None:
    with open_session(config) as con:
        params = {"files": [str(p) for p in files], "columns": spec.column_names}
        frame = con.execute(load_sql("ingest/spec_lake_rows"), params).df()
    report.rows[spec.table] = len(frame)
    located = frame.set_index("where")
    reasons = failure_reasons(spec_schema(spec, key_checked=False), located.reset_index(drop=True))
    for position, reason in list(reasons.items())[:_SHOWN]:
        report.problems.append(f"{spec.table} {located.index[position]}: {reason}")
    if len(reasons) > _SHOWN:
        report.problems.append(f"{spec.table}: {len(reasons) - _SHOWN} more rows fail validation")
