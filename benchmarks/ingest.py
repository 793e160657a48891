"""Benchmark: raw files -> validated Parquet lake, ours vs pandas + pandera, plus a 10M-row run.

Ours: `flip_core.lake.ingest_raw_dir` (Arrow parse of clean files, else numpy line split and
DuckDB SQL parse/dedup; pandera checks; DuckDB COPY to Parquet) into a fresh lake. Baseline,
same run, same files: pandas `read_csv(sep='::', engine='python')` per file, then the same
pandera models lazily (ratings also checked against the known users and movies), then
`to_parquet` of the valid rows.
Rows/s counts every data row of users, movies and ratings, from the raw files to the lake.
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

`--components` also times, each alone, the steps any ingest of the ml-1m files must take (read,
inflate and parse the ratings; open DuckDB; pandera on every table; the ratings `COPY`), and
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
import pyarrow as pa
import pyarrow.parquet as pq

from flip_core.config import DuckDBConfig, IngestConfig
from flip_core.data.synth import write_synthetic_movielens
from flip_core.lake import MoviesModel, UsersModel, ingest_raw_dir
from flip_core.lake.duck import close_shared_database, open_session
from flip_core.lake.ingest import _FAST_TYPES, ENCODING, _copy_rows, find_sources
from flip_core.lake.lines import LineStats, TypedBatch, iter_batches, parse_int_lines
from flip_core.lake.manifest import lake_dir
from flip_core.lake.schemas import TABLES, failure_reasons, ratings_schema

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RAW = REPO.parent / "shared" / "data" / "ml-1m"
GIB = 1 << 30
_TEXT = {"gender", "zip", "title", "genres"}


def ours(
    raw: Path, work: Path, threads: int, new_database: bool = False
) -> tuple[int, float, float]:
    """Ingest `raw` into a fresh lake under `work`; (rows read, seconds, CPU seconds).

    `new_database`: close the process's shared DuckDB database first (untimed: a process's
    first ingest has none to close), so that the ingest opens a new one, on a cold allocator.
    """
    config = IngestConfig(duckdb=DuckDBConfig(threads=threads))
    if new_database:
        close_shared_database()
    start, cpu = time.perf_counter(), time.process_time()
    result = ingest_raw_dir(raw, work / "ours", config)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return sum(s.rows_seen for s in result.sources), seconds, cpu


def baseline(raw: Path, work: Path) -> tuple[int, float, float]:
    """pandas python-engine read + the same pandera validation + Parquet; (rows, s, CPU s)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = work / "baseline"
    out.mkdir(parents=True, exist_ok=True)
    frames: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    for table, path in find_sources(raw):
        frame = pd.read_csv(
            path,
            sep="::",
            engine="python",
            header=None,
            names=list(TABLES[table].fields),
            dtype={f: str for f in TABLES[table].fields if f in _TEXT},
            encoding="latin-1",
        )
        frames[table].append(frame)
    rows = 0
    valid: dict[str, pd.DataFrame] = {}
    for table, model in (("users", UsersModel), ("movies", MoviesModel)):
        frame = _typed(pd.concat(frames[table], ignore_index=True), table)
        rows += len(frame)
        valid[table] = frame.drop(index=list(failure_reasons(model.to_schema(), frame)))
    ratings = _typed(pd.concat(frames["ratings"], ignore_index=True), "ratings")
    rows += len(ratings)
    schema = ratings_schema(
        valid["users"]["user_id"].to_numpy(), valid["movies"]["movie_id"].to_numpy()
    )
    valid["ratings"] = ratings.drop(index=list(failure_reasons(schema, ratings)))
    for table, frame in valid.items():
        frame.to_parquet(out / f"{table}.parquet")
    return rows, time.perf_counter() - start, time.process_time() - cpu


def _typed(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    ints = {"user_id", "movie_id", "rating", "age", "occupation"}
    types = {
        c: ("int64" if c == "timestamp" else "int32") for c in frame if c in ints | {"timestamp"}
    }
    return frame.astype(types)


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
    of `repeats`): reading + parsing the ratings, opening DuckDB, pandera on every table, and
    the ratings `COPY`. `lake` is a lake of `raw` already ingested (its users and movies)."""
    config = IngestConfig(duckdb=DuckDBConfig(threads=threads))
    path = next(p for t, p in find_sources(raw) if t == "ratings")
    types = _FAST_TYPES["ratings"]  # the column types the ingest's fast path parses
    costs: dict[str, tuple[float, float]] = {}

    def measure(name: str, call: Callable[[], Any]) -> Any:
        result, wall, cpu = best_of(call, repeats)
        costs[name] = (wall, cpu)
        return result

    def fast(data: bytes, first: int) -> pa.Table | None:
        return parse_int_lines(data, first, types, config.max_line_bytes)

    def parse() -> pa.Table:
        chunk, stats = config.chunk_mib << 20, LineStats()
        batches = iter_batches(path, ENCODING, chunk, config.max_line_bytes, stats, fast)
        return pa.concat_tables([b.table for b in batches if isinstance(b, TypedBatch)])

    ratings = measure("ratings: read, inflate, parse", parse).select(list(TABLES["ratings"].fields))
    dims = {t: pq.read_table(lake / t).select(list(TABLES[t].fields)) for t in ("users", "movies")}
    users, movies = dims["users"]["user_id"].to_numpy(), dims["movies"]["movie_id"].to_numpy()
    schema = ratings_schema(users, movies, key_checked=True)
    measure("ratings: pandera", lambda: failure_reasons(schema, ratings.to_pandas()))
    models = {"users": UsersModel, "movies": MoviesModel}
    measure(
        "users + movies: pandera",
        lambda: [failure_reasons(models[t].to_schema(), dims[t].to_pandas()) for t in models],
    )
    measure("DuckDB session", lambda: open_session(config.duckdb).close())
    with open_session(config.duckdb) as con:
        con.register("clean", ratings.append_column("line_number", pa.array(range(len(ratings)))))
        target = lake.parent / "components.parquet"
        measure(
            "ratings: COPY to Parquet",  # the ingest's own COPY call (the ENUM type, the statement)
            lambda: _copy_rows(con, "write_clean_ratings", "ratings", path, target),
        )
    return costs


def warm_up() -> None:
    """Import and register pandera's pandas backend once, outside every timed section."""
    frame = pd.DataFrame({c: pd.Series([1], dtype="int32") for c in ("user_id", "movie_id")})
    frame["rating"] = pd.Series([3], dtype="int32")
    frame["timestamp"] = pd.Series([0], dtype="int64")
    failure_reasons(ratings_schema([1], [1]), frame)


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
            lake = lake_dir(work / "a0" / "ours", IngestConfig().dataset)
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
