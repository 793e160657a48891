"""Protocol splits and vocabularies: the lake's tables -> labelled, id-encoded split files.

The dataset spec says everything: which lake tables join how, the label rule, the event time, the
fields and their kinds, the protocols. The events table is joined with its dimension tables
(Arrow hash joins on the spec's keys; events without a match are counted, not kept), labelled,
sorted and cut in DuckDB (`sql/features/split.sql`); vocabularies and numeric bins are fitted on
train only and every split is encoded with them. Output, under a folder keyed by the lake's
content hash, the spec, the protocol and the min-count, so a rerun on the same data returns at once:

    splits/{train,valid,test}.parquet   raw values `<field>_raw`, ids `<field>`, label, timestamp
    feature_map.json                    vocabularies (train only), field specs, bins, prompt
    splits.json                         row counts, positive rates, time ranges, OOV rates, hashes
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flip_core.config import DuckDBConfig
from flip_core.data.feature_map import FEATURE_MAP_FILE, FeatureMap, FieldVocab, NUM_RESERVED, OOV_ID
from flip_core.data.fields import fit_bins, id_values, raw_values
from flip_core.hashing import file_sha256, text_sha256
from flip_core.lake import load_manifest
from flip_core.spec import DatasetSpec, LabelRule, ProtocolSpec
from flip_core.sql import SQL_DIR, load_sql

SPLITS_VERSION = "splits/2"
_COMPARE = {
    ">=": pc.greater_equal,
    ">": pc.greater,
    "<=": pc.less_equal,
    "<": pc.less,
    "==": pc.equal,
    "!=": pc.not_equal,
}


@dataclass(frozen=True)
class SplitsBuild:
    """Where a protocol's split files are and the hashes that identify them."""

    splits_dir: Path
    data_hash: str
    splits_hash: str
    protocol: str
    cached: bool


def lake_files(lake_dir: Path, spec: DatasetSpec) -> dict[str, list[Path]]:
    """The Parquet files of each spec table that the lake manifest accounts for (no orphans)."""
    manifest = load_manifest(lake_dir, lake_dir.name)
    files: dict[str, list[Path]] = {t.name: [] for t in spec.tables}
    for rel in sorted(manifest.listed_files()):
        table = rel.split("/", 1)[0]
        if table in files:
            files[table].append(lake_dir / rel)
    needed = [spec.events, *(j.table for j in spec.joins)]
    missing = [t for t in needed if not files[t]]
    if missing:
        raise FileNotFoundError(
            f"lake {lake_dir} has no ingested Parquet files for: {', '.join(missing)} "
            f"(run `flip data ingest --dataset <{spec.name} spec>` first)"
        )
    return files


def lake_data_hash(files: dict[str, list[Path]]) -> str:
    """Content hash over the lake files of every table."""
    parts = [f"{t}/{p.name}:{file_sha256(p)}" for t in sorted(files) for p in files[t]]
    return text_sha256("|".join(parts))


def code_hash(*modules: str) -> str:
    """Hash of the given `flip_core/data` modules and every `sql/features` statement."""
    here = Path(__file__).resolve().parent
    paths = [here / f"{m}.py" for m in modules] + sorted((SQL_DIR / "features").glob("*.sql"))
    return text_sha256("|".join(f"{p.name}:{file_sha256(p)}" for p in paths))


def splits_key(data_hash: str, spec: DatasetSpec, protocol: ProtocolSpec, min_count: int) -> str:
    """Hash identifying one split build (data, spec, protocol, min-count and the code)."""
    key = {
        "v": SPLITS_VERSION,
        "code": code_hash("features", "feature_map", "fields"),
        "data": data_hash,
        "spec": spec.content_hash(),
        "protocol": protocol.model_dump(mode="json"),
        "min": min_count,
    }
    return text_sha256(json.dumps(key, sort_keys=True))


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
    spec: DatasetSpec,
    protocol: ProtocolSpec,
    min_count: int = 1,
    duckdb_settings: DuckDBConfig | None = None,
) -> SplitsBuild:
    """Cut the lake into the protocol's splits and fit the vocabularies (cached by content)."""
    files = lake_files(lake_dir, spec)
    data_hash = lake_data_hash(files)
    key = splits_key(data_hash, spec, protocol, min_count)
    out = features_root / protocol.name / key[:16]
    if (out / "splits.json").is_file():
        return SplitsBuild(out, data_hash, key, protocol.name, cached=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "splits").mkdir(parents=True)
    rows, unmatched = joined_rows(spec, files)
    with connect(duckdb_settings or DuckDBConfig()) as con:
        order = _split_order(con, spec, rows, protocol)
    rows = rows.take(order["_row"])
    split = order["split"]
    raw = {f.name: raw_values(f, _columns(rows)) for f in spec.fields}
    train = pc.equal(split, "train")
    vocabs = [_fit_field(spec, name, values, train, min_count) for name, values in raw.items()]
    feature_map = FeatureMap(
        vocabs, min_count, dataset=spec.name, prompt=spec.prompt, columns=spec.input_columns()
    )
    feature_map.save(tmp / FEATURE_MAP_FILE)
    table = _encoded(rows, raw, feature_map, order["row_number"], spec.timestamp)
    stats: dict[str, dict[str, Any]] = {}
    for name in protocol.splits:
        part = table.filter(pc.equal(split, name))
        pq.write_table(part, tmp / "splits" / f"{name}.parquet")
        stats[name] = _split_stats(part, feature_map.field_names)
    summary = {
        "dataset": spec.name,
        "protocol": protocol.model_dump(mode="json"),
        "min_count": min_count,
        "data_hash": data_hash,
        "spec_hash": spec.content_hash(),
        "splits_hash": key,
        "unmatched_events": unmatched,
        "vocab_sizes": dict(zip(feature_map.field_names, feature_map.vocab_sizes, strict=True)),
        "splits": stats,
    }
    (tmp / "splits.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return SplitsBuild(out, data_hash, key, protocol.name, cached=False)


def joined_rows(spec: DatasetSpec, files: dict[str, list[Path]]) -> tuple[pa.Table, dict[str, int]]:
    """Events joined with their dimension tables, labelled; and per join, events left out."""
    rows = _read(files[spec.events])
    unmatched: dict[str, int] = {}
    for join in spec.joins:
        dimension = _read(files[join.table]).drop_columns(["source_file", "line_number"])
        before = rows.num_rows
        rows = rows.join(dimension, keys=join.key, join_type="inner")
        unmatched[join.table] = before - rows.num_rows
    label = label_values(spec.label, rows[spec.label.column])
    return rows.append_column("label", label), unmatched


def label_values(rule: LabelRule, values: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The 0/1 label (int8) the rule gives each value."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if rule.op is None:
        other = pc.drop_null(pc.filter(values, pc.invert(pc.is_in(values, pa.array([0, 1])))))
        if len(other):
            raise ValueError(
                f"label column {rule.column!r} holds {other[0].as_py()!r}, not 0/1; give the "
                "spec's label an op and value (or allowed: [0, 1] on the column)"
            )
        return pc.cast(values, pa.int8())
    if rule.op == "in":
        label = pc.is_in(values, value_set=pa.array(rule.values).cast(values.type))
    else:
        label = _COMPARE[rule.op](values, pa.scalar(rule.values[0]).cast(values.type))
    return pc.cast(label, pa.int8())


def _read(paths: list[Path]) -> pa.Table:
    table = pa.concat_tables([pq.read_table(p) for p in paths], promote_options="default")
    return table.drop_columns([c for c in table.column_names if c == "ingest_date"])


def _columns(table: pa.Table) -> dict[str, pa.Array]:
    return {name: table[name].combine_chunks() for name in table.column_names}


def _split_order(
    con: duckdb.DuckDBPyConnection, spec: DatasetSpec, rows: pa.Table, protocol: ProtocolSpec
) -> pa.Table:
    n = rows.num_rows
    nulls = pa.nulls(n, pa.int64())
    user, item = spec.role_field("user"), spec.role_field("item")
    sort_input = pa.table(
        {
            "_row": pa.array(np.arange(n, dtype=np.int64)),
            "_time": rows[spec.timestamp],
            "_user": rows[spec.field(user).source_columns[0]] if user else nulls,
            "_item": rows[spec.field(item).source_columns[0]] if item else nulls,
            "source_file": rows["source_file"],
            "line_number": rows["line_number"],
        }
    )
    con.register("feature_input", sort_input)
    params = {
        "order": protocol.order,
        "seed": protocol.seed,
        "train_fraction": protocol.train,
        "valid_fraction": protocol.valid,
    }
    order = con.sql(load_sql("features/split"), params=params).to_arrow_table()
    con.unregister("feature_input")
    return order.combine_chunks()


def _fit_field(
    spec: DatasetSpec, name: str, raw: pa.Array, train: pa.Array, min_count: int
) -> FieldVocab:
    field = spec.field(name)
    bins = fit_bins(field, raw.filter(train)) if field.kind == "numeric" else None
    keys = id_values(field, raw.filter(train), bins)
    counts = pc.value_counts(pc.drop_null(keys))
    values = counts.field("values").to_pylist()
    numbers = counts.field("counts").to_pylist()
    ranked = sorted(zip(values, numbers, strict=True), key=lambda vc: (-vc[1], vc[0]))
    kept = [(v, c) for v, c in ranked if c >= min_count]
    oov = sum(c for _, c in ranked if c < min_count)
    return FieldVocab(name, [v for v, _ in kept], [c for _, c in kept], oov, field, bins)


def encode_field(feature_map: FeatureMap, name: str, raw: pa.Array) -> pa.Array:
    """Ids (int32) of one field's raw values; unseen or missing values -> OOV."""
    keys = id_values(feature_map.field_spec(name), raw, feature_map.bins(name))
    vocab = pa.array(feature_map.fields[feature_map.field_names.index(name)].values, pa.string())
    index = pc.index_in(keys, value_set=vocab)
    return pc.fill_null(pc.add(pc.cast(index, pa.int32()), NUM_RESERVED), OOV_ID)


def _encoded(
    rows: pa.Table,
    raw: dict[str, pa.Array],
    feature_map: FeatureMap,
    row_number: pa.Array,
    time_column: str,
) -> pa.Table:
    columns: dict[str, Any] = {f"{name}_raw": values for name, values in raw.items()}
    for name, values in raw.items():
        columns[name] = encode_field(feature_map, name, values)
    columns["label"] = rows["label"]
    columns["timestamp"] = rows[time_column]
    columns["row_number"] = row_number
    return pa.table(columns)


def _split_stats(part: pa.Table, fields: list[str]) -> dict[str, Any]:
    times = part["timestamp"]
    return {
        "rows": part.num_rows,
        "positive_rate": float(pc.mean(part["label"]).as_py() or 0.0),
        "min_timestamp": _plain(pc.min(times).as_py()),
        "max_timestamp": _plain(pc.max(times).as_py()),
        "oov_rate": {
            f: float(pc.mean(pc.cast(pc.equal(part[f], OOV_ID), pa.float64())).as_py() or 0.0)
            for f in fields
        },
    }


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def read_splits_summary(splits_dir: Path) -> dict[str, Any]:
    """The `splits.json` of a split build."""
    return dict(json.loads((splits_dir / "splits.json").read_text(encoding="utf-8")))
