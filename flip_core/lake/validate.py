"""Check a whole lake: manifest and files agree, every table passes its pandera model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from flip_core.config import DuckDBConfig
from flip_core.lake.duck import open_session
from flip_core.lake.manifest import lake_dir, load_manifest, table_files
from flip_core.lake.schemas import TABLES, failure_reasons, ratings_schema
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


def validate_lake(
    data_root: Path, dataset: str, duckdb_config: DuckDBConfig | None = None, strict: bool = True
) -> LakeReport:
    """Validate the lake of `dataset`; with `strict`, raise `LakeValidationError` on problems."""
    root = lake_dir(data_root, dataset)
    manifest = load_manifest(root, dataset)
    report = LakeReport(lake_dir=root, rows={}, files={})
    listed = manifest.listed_files()
    with open_session(duckdb_config or DuckDBConfig()) as con:
        frames: dict[str, pd.DataFrame] = {}
        for table in TABLES:
            files = table_files(root, table)
            report.files[table] = len(files)
            for path in files:
                if path.relative_to(root).as_posix() not in listed:
                    report.problems.append(f"{path}: not listed in the manifest (orphan)")
            for rel in sorted(f for f in listed if f.startswith(f"{table}/")):
                if not (root / rel).is_file():
                    report.problems.append(f"{root / rel}: listed in the manifest but missing")
            if not files:
                report.rows[table] = 0
                report.problems.append(f"{table}: no Parquet files in {root / table}")
                continue
            query = load_sql(f"ingest/lake_{table}")
            frames[table] = con.execute(query, {"files": [str(p) for p in files]}).df()
            report.rows[table] = len(frames[table])
            if report.rows[table] != manifest.rows(table):
                report.problems.append(
                    f"{table}: {report.rows[table]:,} rows in files, "
                    f"{manifest.rows(table):,} in the manifest"
                )
    _check_values(frames, report)
    if strict and report.problems:
        shown = "; ".join(report.problems[:_SHOWN])
        raise LakeValidationError(f"lake {root} is invalid ({len(report.problems)}): {shown}")
    return report


def _check_values(frames: dict[str, pd.DataFrame], report: LakeReport) -> None:
    for table, frame in frames.items():
        located = frame.set_index("where")
        if table == "ratings":
            users = frames.get("users")
            movies = frames.get("movies")
            schema = ratings_schema(
                users["user_id"].to_numpy() if users is not None else [],
                movies["movie_id"].to_numpy() if movies is not None else [],
            )
        else:
            schema = TABLES[table].model.to_schema()
        reasons = failure_reasons(schema, located.reset_index(drop=True))
        for position, reason in list(reasons.items())[:_SHOWN]:
            report.problems.append(f"{table} {located.index[position]}: {reason}")
        if len(reasons) > _SHOWN:
            report.problems.append(f"{table}: {len(reasons) - _SHOWN} more rows fail validation")
