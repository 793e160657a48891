"""Protocol splits and vocabularies: lake Parquet -> labelled, id-encoded split files.

All set work (join, label, ordering, split cut, counts, id assignment, OOV rates) runs in DuckDB
(`sql/features/*.sql`). Output, under a folder keyed by the lake's content hash, the protocol and
the min-count, so a rerun on the same data returns at once:

    splits/{train,valid,test}.parquet   raw values `<field>_raw`, ids `<field>`, label, timestamp
    feature_map.json                    vocabularies fitted on train only
    splits.json                         row counts, positive rates, time ranges, OOV rates, hashes
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq

from flip_core.config import DuckDBConfig
from flip_core.data.feature_map import FeatureMap, FieldVocab
from flip_core.data.protocols import FIELDS, Protocol
from flip_core.hashing import file_sha256, text_sha256
from flip_core.lake import load_manifest
from flip_core.sql import SQL_DIR, load_sql

LAKE_TABLES = ("ratings", "users", "movies")
SPLITS_VERSION = "splits/1"


@dataclass(frozen=True)
class SplitsBuild:
    """Where a protocol's split files are and the hashes that identify them."""

    splits_dir: Path
    data_hash: str
    splits_hash: str
    protocol: str
    cached: bool


def lake_files(lake_dir: Path) -> dict[str, list[Path]]:
    """The Parquet files of each lake table that the lake manifest accounts for (no orphans)."""
    manifest = load_manifest(lake_dir, lake_dir.name)
    files: dict[str, list[Path]] = {t: [] for t in LAKE_TABLES}
    for rel in sorted(manifest.listed_files()):
        table = rel.split("/", 1)[0]
        if table in files:
            files[table].append(lake_dir / rel)
    missing = [t for t, paths in files.items() if not paths]
    if missing:
        raise FileNotFoundError(
            f"lake {lake_dir} has no ingested Parquet files for: {', '.join(missing)} "
            "(run `flip data ingest` first)"
        )
    return files


def lake_data_hash(files: dict[str, list[Path]]) -> str:
    """Content hash over the lake's ratings, users and movies Parquet files."""
    parts = [f"{t}/{p.name}:{file_sha256(p)}" for t in LAKE_TABLES for p in files[t]]
    return text_sha256("|".join(parts))


def code_hash(*modules: str) -> str:
    """Hash of the given `flip_core/data` modules and every `sql/features` statement."""
    here = Path(__file__).resolve().parent
    paths = [here / f"{m}.py" for m in modules] + sorted((SQL_DIR / "features").glob("*.sql"))
    return text_sha256("|".join(f"{p.name}:{file_sha256(p)}" for p in paths))


def splits_key(data_hash: str, protocol: Protocol, min_count: int) -> str:
    """Hash identifying one split build (data, protocol, min-count and the code that builds it)."""
    spec = {
        "v": SPLITS_VERSION,
        "code": code_hash("features", "feature_map", "protocols"),
        "data": data_hash,
        "protocol": asdict(protocol),
        "min": min_count,
    }
    return text_sha256(json.dumps(spec, sort_keys=True))


def connect(settings: DuckDBConfig) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the configured limits."""
    con = duckdb.connect(
        config={"threads": settings.threads, "memory_limit": settings.memory_limit}
    )
    if settings.temp_directory is not None:
        con.execute("SET temp_directory = ?", [str(settings.temp_directory)])
    return con


def build_splits(
    lake_dir: Path,
    features_root: Path,
    protocol: Protocol,
    min_count: int = 1,
    duckdb_settings: DuckDBConfig | None = None,
) -> SplitsBuild:
    """Cut the lake into the protocol's splits and fit the vocabularies (cached by content)."""
    files = lake_files(lake_dir)
    data_hash = lake_data_hash(files)
    key = splits_key(data_hash, protocol, min_count)
    out = features_root / protocol.name / key[:16]
    if (out / "splits.json").is_file():
        return SplitsBuild(out, data_hash, key, protocol.name, cached=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "splits").mkdir(parents=True)
    with connect(duckdb_settings or DuckDBConfig()) as con:
        _load_rows(con, files, protocol)
        con.execute(load_sql("features/vocab"), {"min_count": min_count})
        feature_map = _feature_map(con, min_count)
        feature_map.save(tmp / "feature_map.json")
        con.execute(load_sql("features/encode"))
        for split in protocol.splits:
            query = load_sql("features/split_rows")
            table = con.sql(query, params={"split": split}).to_arrow_table()
            pq.write_table(table, tmp / "splits" / f"{split}.parquet")
        stats = _split_stats(con)
    summary = {
        "protocol": asdict(protocol),
        "min_count": min_count,
        "data_hash": data_hash,
        "splits_hash": key,
        "vocab_sizes": dict(zip(feature_map.field_names, feature_map.vocab_sizes, strict=True)),
        "splits": stats,
    }
    (tmp / "splits.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return SplitsBuild(out, data_hash, key, protocol.name, cached=False)


def _load_rows(
    con: duckdb.DuckDBPyConnection, files: dict[str, list[Path]], protocol: Protocol
) -> None:
    params: dict[str, Any] = {
        **{table: [str(p) for p in paths] for table, paths in files.items()},
        "order": protocol.order,
        "seed": protocol.seed,
        "click_threshold": protocol.click_threshold,
        "train_fraction": protocol.train_fraction,
        "valid_fraction": protocol.valid_fraction,
    }
    con.execute(load_sql("features/rows"), params)


def _feature_map(con: duckdb.DuckDBPyConnection, min_count: int) -> FeatureMap:
    rows = con.execute(load_sql("features/vocab_rows")).fetchall()
    by_field: dict[str, FieldVocab] = {name: FieldVocab(name, [], [], 0) for name in FIELDS}
    for field_name, value, count, value_id in rows:
        vocab = by_field[field_name]
        if value_id is None:
            vocab.oov_count += int(count)
        else:
            vocab.values.append(value)
            vocab.counts.append(int(count))
    return FeatureMap(
        [FieldVocab(v.name, v.values, v.counts, v.oov_count) for v in by_field.values()], min_count
    )


def _split_stats(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    cursor = con.execute(load_sql("features/split_stats"))
    names = [d[0] for d in cursor.description]
    stats: dict[str, dict[str, Any]] = {}
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        stats[row["split"]] = {
            "rows": int(row["rows"]),
            "positive_rate": float(row["positive_rate"]),
            "min_timestamp": int(row["min_timestamp"]),
            "max_timestamp": int(row["max_timestamp"]),
            "oov_rate": {f: float(row[f"oov_{f}"]) for f in FIELDS},
        }
    return stats


def read_splits_summary(splits_dir: Path) -> dict[str, Any]:
    """The `splits.json` of a split build."""
    return dict(json.loads((splits_dir / "splits.json").read_text(encoding="utf-8")))
