"""Benchmark: raw files -> validated Parquet lake, ours vs pandas + pandera, plus a 10M-row run.

Ours: `flip_core.lake.ingest_dataset` on the ml-1m dataset spec (`configs/datasets/ml-1m.yaml`:
fast path for clean files of simple shape, else numpy line split and DuckDB SQL parse/dedup;
pandera checks; foreign keys; DuckDB COPY to Parquet) into a fresh lake. Baseline, same run,
same files, same spec: pandas `read_csv(sep=<delimiter>, engine='python')` per file, then the
same pandera schemas lazily (the events also checked against the valid keys of the joined
tables), then `to_parquet` of the valid rows.
Rows/s counts every data row of every table, from the raw files to the lake.
Both sides run `--repeats` times, alternating, each into a fresh folder, after one untimed warm-up
run each; the best time of each side is reported (the machine may be shared). Ours reuses the
process's DuckDB database, which the warm-up opened; each repeat also times an ingest that first
closes it (untimed) and so opens a new one, as a process's first ingest does (`ours, new DuckDB
database`; `ratio_new_database` in the JSON). The CPU seconds of
each side (process time, all threads) are printed too, with their ratio (`cpu_ratio` in the JSON):
on a loaded machine they say more than wall time.

The 10M-row synthetic ratings file (plus 6,040 users, 3,952 movies) is ingested in a child
process, whose peak RSS comes from `os.wait4`. The pandas baseline on it is optional
(`--baseline-10m`; about 3 minutes on 2 cores).

`--components` also times, each alone, the steps any ingest of the files must take (read,
inflate and parse the events; open DuckDB; pandera on every table; the events' `COPY`), and
prints the ratio to pandas they would allow if nothing else ran and they were spread perfectly
over the cores: a ceiling for this machine, not a target.

Run: `.venv/bin/python benchmarks/ingest.py` (synthetic data stands in
when ../shared/data/ml-1m is absent). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.parquet as pq

from flip_core.config import DuckDBConfig, IngestConfig
from flip_core.data.synth import write_synthetic_movielens
from flip_core.lake import ingest_dataset
from flip_core.lake.duck import close_shared_database, open_session
from flip_core.lake.ingest import fast_parser, find_sources
from flip_core.lake.lines import LineStats, TypedBatch, iter_batches
from flip_core.lake.spec_schema import failure_reasons, spec_schema
from flip_core.layout import DataLayout
from flip_core.spec import DatasetSpec, TableSpec, load_dataset_spec
from flip_core.sql import load_sql

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RAW = REPO.parent / "shared" / "data" / "ml-1m"
SPEC = REPO / "configs" / "datasets" / "ml-1m.yaml"
GIB = 1 << 30
_PANDAS_TYPES = {"int32": "int32", "int64": "int64", "float64": "float64", "string": "object"}


def ours(
    raw: Path, work: Path, threads: int, new_database: bool = False
) -> tuple[int, float, float]:
    """Ingest `raw` into a fresh lake under `work`; (rows read, seconds, CPU seconds).

    `new_database`: close the process's shared DuckDB database first (untimed: a process's
    first ingest has none to close), so that the ingest opens a new one, on a cold allocator.
    """
    config = IngestConfig(duckdb=DuckDBConfig(threads=threads))
    spec = load_dataset_spec(SPEC)
    if new_database:
        close_shared_database()
    start, cpu = time.perf_counter(), time.process_time()
    result = ingest_dataset(raw, work / "ours", spec, config)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return sum(s.rows_seen for s in result.sources), seconds, cpu


def baseline(raw: Path, work: Path) -> tuple[int, float, float]:
    """pandas python-engine read + the same pandera validation + Parquet; (rows, s, CPU s)."""
    start, cpu = time.perf_counter(), time.process_time()
    spec = load_dataset_spec(SPEC)
    out = work / "baseline"
    out.mkdir(parents=True, exist_ok=True)
    frames: dict[str, list[pd.DataFrame]] = {t.name: [] for t in spec.tables}
    for table, path in find_sources(raw, spec):
        frame = pd.read_csv(
            path,
            sep=table.delimiter,
            engine="python",
            header=None,
            names=table.column_names,
            dtype={c.name: str for c in table.columns if c.type == "string"},
            encoding=table.encoding,
        )
        frames[table.name].append(frame)
    rows = 0
    valid: dict[str, pd.DataFrame] = {}
    for table in spec.ingest_order:
        frame = pd.concat(frames[table.name], ignore_index=True)
        frame = frame.astype({c.name: _PANDAS_TYPES[c.type] for c in table.columns})
        rows += len(frame)
        schema = _with_known_keys(spec, table, valid)
        valid[table.name] = frame.drop(index=list(failure_reasons(schema, frame)))
    for name, frame in valid.items():
        frame.to_parquet(out / f"{name}.parquet")
    return rows, time.perf_counter() - start, time.process_time() - cpu


def _with_known_keys(
    spec: DatasetSpec, table: TableSpec, valid: dict[str, pd.DataFrame]
) -> pandera.DataFrameSchema:
    """The table's spec schema plus an `isin` check per single-column join on the valid keys."""
    schema = spec_schema(table, key_checked=False)
    if table.name != spec.events:
        return schema
    updates: dict[str, Any] = {}
    for join in spec.joins:
        (key,) = join.key
        known = valid[join.table][key].to_numpy()
        updates[key] = {"checks": [*schema.columns[key].checks, pandera.Check.isin(known)]}
    return schema.update_columns(updates)


def synthetic_10m(folder: Path, rows: int) -> Path:
    """users.dat, movies.dat and a `rows`-line ratings.dat (unique keys); reused when present."""
    ratings = folder / "ratings.dat"
    marker = folder / f".rows-{rows}"
    if marker.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    write_synthetic_movielens(folder, users=6040, movies=3952, ratings_per_user=1, seed=0)
    rng = np.random.default_rng(0)
    step = 1_000_000
    with ratings.open("w", encoding="latin-1") as handle:
        for begin in range(0, rows, step):
            n = min(step, rows - begin)
            users = rng.integers(1, 6041, n).tolist()
            movies = rng.integers(1, 3953, n).tolist()
            stars = rng.integers(1, 6, n).tolist()
            stamps = range(956_703_932 + begin, 956_703_932 + begin + n)
            handle.write(
                "".join(
                    f"{u}::{m}::{r}::{t}\n"
                    for u, m, r, t in zip(users, movies, stars, stamps, strict=True)
                )
            )
    marker.touch()
    return folder


def child_run(raw: Path, work: Path, threads: int) -> tuple[int, float, float]:
    """Ingest in a child process; (rows, seconds, peak RSS GiB of the child)."""
    cmd = [sys.executable, __file__, "--child", str(raw), str(work), str(threads)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    assert proc.stdout is not None
    output = proc.stdout.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"10M-row child run failed (exit {proc.returncode}): {output}")
    result = json.loads(output.strip().splitlines()[-1])
    return int(result["rows"]), float(result["seconds"]), usage.ru_maxrss * 1024 / GIB


def best_of(call: Callable[[], Any], repeats: int) -> tuple[Any, float, float]:
    """`call()` run `repeats` times: (its last result, best wall seconds, best CPU seconds)."""
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = call()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - cpu_start)
    return result, wall, cpu


def components(raw: Path, lake: Path, threads: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Wall and CPU seconds of the steps every ingest of `raw` must take, each run alone (best
    of `repeats`): reading + parsing the events, opening DuckDB, pandera on every table, and
    the events' `COPY`. `lake` is a lake of `raw` already ingested (its dimension tables)."""
    config = IngestConfig(duckdb=DuckDBConfig(threads=threads))
    spec = load_dataset_spec(SPEC)
    events = spec.table(spec.events)
    path = next(p for t, p in find_sources(raw, spec) if t.name == spec.events)
    parser = fast_parser(events, config.max_line_bytes)  # the ingest's own fast parse
    costs: dict[str, tuple[float, float]] = {}

    def measure(name: str, call: Callable[[], Any]) -> Any:
        result, wall, cpu = best_of(call, repeats)
        costs[name] = (wall, cpu)
        return result

    def parse() -> pa.Table:
        chunk, stats = config.chunk_mib << 20, LineStats()
        batches = iter_batches(path, events.encoding, chunk, config.max_line_bytes, stats, parser)
        return pa.concat_tables([b.table for b in batches if isinstance(b, TypedBatch)])

    parsed = measure(f"{events.name}: read, inflate, parse", parse)
    rows = parsed.select(events.column_names)
    schema = spec_schema(events)
    measure(f"{events.name}: pandera", lambda: failure_reasons(schema, rows.to_pandas()))
    dims = [spec.table(j.table) for j in spec.joins]
    frames = {t.name: pq.read_table(lake / t.name).select(t.column_names) for t in dims}
    measure(
        "dimension tables: pandera",
        lambda: [failure_reasons(spec_schema(t), frames[t.name].to_pandas()) for t in dims],
    )
    measure("DuckDB session", lambda: open_session(config.duckdb).close())
    with open_session(config.duckdb) as con:
        con.register("clean", parsed)
        target = lake.parent / "components.parquet"
        params = {"path": str(target), "source": path.name, "columns": events.column_names}

        def copy() -> None:  # the ingest's own COPY (the ENUM type, the statement)
            con.execute(load_sql("ingest/source_type"), {"source": path.name})
            con.execute(load_sql("ingest/write_clean"), params)

        measure(f"{events.name}: COPY to Parquet", copy)
    return costs


def warm_up() -> None:
    """Import and register pandera's pandas backend once, outside every timed section."""
    spec = load_dataset_spec(SPEC)
    events = spec.table(spec.events)
    frame = pd.DataFrame(
        {c.name: pd.Series([1], dtype=_PANDAS_TYPES[c.type]) for c in events.columns}
    )
    failure_reasons(spec_schema(events), frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, default=DEFAULT_RAW)
    parser.add_argument("--rows-10m", type=int, default=10_000_000)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per side (best kept).")
    parser.add_argument("--baseline-10m", action="store_true", help="Also time pandas on 10M.")
    parser.add_argument(
        "--components",
        action="store_true",
        help="Also time the steps every ingest must take, each alone, and the ratio they allow.",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        raw, work, threads = Path(args.child[0]), Path(args.child[1]), int(args.child[2])
        warm_up()
        rows, seconds, _ = ours(raw, work, threads)
        print(json.dumps({"rows": rows, "seconds": seconds}))
        return

    with tempfile.TemporaryDirectory(dir=args.work_dir, prefix="flip-bench-ingest-") as tmp:
        work = Path(tmp)
        raw = args.raw_dir
        if not (raw / "users.dat").is_file():
            raw = work / "synthetic"
            write_synthetic_movielens(raw, users=3000, movies=3883, ratings_per_user=160, seed=0)
            print(f"{args.raw_dir} not found; using synthetic data in {raw}")
        warm_up()
        ours(raw, work / "warm", args.threads)
        baseline(raw, work / "warm")
        runs = [
            (
                ours(raw, work / f"a{i}", args.threads),
                baseline(raw, work / f"a{i}"),
                ours(raw, work / f"n{i}", args.threads, new_database=True),
            )
            for i in range(args.repeats)
        ]
        rows, seconds, cpu = min((r[0] for r in runs), key=lambda r: r[1])
        base_rows, base_seconds, base_cpu = min((r[1] for r in runs), key=lambda r: r[1])
        assert base_rows == rows, (base_rows, rows)
        print("  runs (s): ours " + " ".join(f"{r[0][1]:.3f}" for r in runs), end="")
        print(" | pandas " + " ".join(f"{r[1][1]:.3f}" for r in runs), end="")
        print(" | ours, new database " + " ".join(f"{r[2][1]:.3f}" for r in runs))
        new_seconds = min(r[2][1] for r in runs)
        # CPU seconds of the process (all threads): less sensitive to a shared machine's load.
        cpu, base_cpu = min(r[0][2] for r in runs), min(r[1][2] for r in runs)
        rate, base_rate = rows / seconds, base_rows / base_seconds
        print(f"{raw}: {rows:,} rows")
        print(f"  ours     {seconds:8.2f} s  {rate:12,.0f} rows/s")
        print(f"  pandas   {base_seconds:8.2f} s  {base_rate:12,.0f} rows/s")
        print(f"  ratio    {rate / base_rate:8.1f}x")
        print(f"  cpu      ours {cpu:.3f} s, pandas {base_cpu:.3f} s: {base_cpu / cpu:.1f}x")
        # The first ingest of a process opens DuckDB's database; later ones reuse it.
        print(
            f"  ours, new DuckDB database: {new_seconds:.2f} s, "
            f"{base_seconds / new_seconds:.1f}x pandas"
        )
        if args.components:
            lake = DataLayout(work / "a0" / "ours").lake(load_dataset_spec(SPEC).name)
            costs = components(raw, lake, args.threads, args.repeats)
            for name, (wall, cpu_s) in costs.items():
                print(f"  {name:32s} wall {wall * 1e3:6.1f} ms  cpu {cpu_s * 1e3:6.1f} ms")
            floor = sum(c for _, c in costs.values()) / args.threads
            print(
                f"  these steps alone, spread perfectly over {args.threads} cores: {floor:.3f} s,"
                f" i.e. at most {base_seconds / floor:.1f}x pandas"
            )

        big = synthetic_10m(args.work_dir / f"flip-bench-ingest-{args.rows_10m}", args.rows_10m)
        rows10, seconds10, rss10 = child_run(big, work / "b", args.threads)
        rate10 = rows10 / seconds10
        print(f"{big}: {rows10:,} rows")
        print(f"  ours     {seconds10:8.2f} s  {rate10:12,.0f} rows/s  peak RSS {rss10:.2f} GiB")
        if args.baseline_10m:
            b_rows, b_seconds, _ = baseline(big, work / "b")
            print(f"  pandas   {b_seconds:8.2f} s  {b_rows / b_seconds:12,.0f} rows/s")
            print(f"  ratio    {rate10 / (b_rows / b_seconds):8.1f}x")
    print(
        json.dumps(
            {
                "benchmark": "ingest",
                "rows_per_s": round(rate),
                "baseline_rows_per_s": round(base_rate),
                "ratio": round(rate / base_rate, 2),
                "rows_10m_per_s": round(rate10),
                "peak_rss_gib_10m": round(rss10, 3),
                "cpu_ratio": round(base_cpu / cpu, 2),
                "ratio_new_database": round(base_seconds / new_seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
