"""Benchmark: FLIP_ID scoring of raw rows through the MLflow pyfunc, streamed from Parquet.

Builds a FLIP_ID model (default DCNv2 settings, vocabulary from a synthetic MovieLens-1M-sized
log; weights as initialised, which does not change the cost), saves it as the raw-row pyfunc,
writes N raw rows (5% with unseen user/movie ids) and scores them with `tasks.score.score`
(the code behind `flip score`) in a fresh process per size, so each size's peak RSS is its own.
rows/s counts read + encode + predict + write, after the model is loaded (load time is reported
apart); peak RSS is the child's VmHWM (the whole process: Python, torch, MLflow, the model).
Run it:

    .venv/bin/python benchmarks/score.py

The last line is one JSON object: benchmark, rows_per_s, peak_rss_gib (+ details).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from flip_core.config import IDModelConfig  # noqa: E402
from flip_core.data.feature_map import FeatureMap, FieldVocab  # noqa: E402
from flip_core.data.synth import write_synthetic_movielens  # noqa: E402

UNSEEN_SHARE = 0.05


def read_tables(raw: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """users, movies, ratings of a MovieLens-style folder."""

    def read(name: str, cols: list[str]) -> pd.DataFrame:
        return pd.read_csv(
            raw / f"{name}.dat", sep="::", engine="python", names=cols, encoding="latin-1"
        )

    users = read("users", ["user_id", "gender", "age", "occupation", "zip"])
    users["zip"] = users["zip"].astype(str)
    movies = read("movies", ["movie_id", "title", "genres"])
    ratings = read("ratings", ["user_id", "movie_id", "rating", "timestamp"])
    return users, movies, ratings


# The ml-1m spec's fields (configs/datasets/ml-1m.yaml), all categorical, one column each.
RAW_COLUMNS = ("user_id", "gender", "age", "occupation", "zip", "movie_id", "title", "genres")
_COLUMN_TYPES = {"user_id": "int64", "age": "int64", "occupation": "int64", "movie_id": "int64"}


def build_model(work: Path) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    """Save a FLIP_ID model + feature map and its raw-row pyfunc; return pyfunc dir and tables."""
    from flip_core.models.flip import FlipForCTR, FlipModelConfig
    from tasks.pyfunc import save_pyfunc

    raw = work / "raw"
    write_synthetic_movielens(raw, users=6040, movies=3706, ratings_per_user=20, seed=0)
    users, movies, ratings = read_tables(raw)
    rows = ratings.merge(users, on="user_id").merge(movies, on="movie_id")
    train = rows.sort_values("timestamp").head(len(rows) * 8 // 10)
    fmap = FeatureMap(
        [
            FieldVocab(n, list(vc.index), [int(c) for c in vc.values])
            for n in RAW_COLUMNS
            for vc in [train[n].astype(str).value_counts()]
        ],
        dataset="synth-ml-1m",
        columns={n: _COLUMN_TYPES.get(n, "string") for n in RAW_COLUMNS},
    )
    config = FlipModelConfig(
        kind="ctr",
        field_names=fmap.field_names,
        vocab_sizes=fmap.vocab_sizes,
        id_model=IDModelConfig(),
        variant="flip_id",
    )
    model_dir = work / "flip_id"
    model_dir.mkdir()
    fmap.save(model_dir)
    FlipForCTR(config).save_pretrained(model_dir, feature_map=model_dir / "feature_map.json")
    return save_pyfunc(model_dir, work / "pyfunc"), users, movies


def write_rows(path: Path, n: int, users: pd.DataFrame, movies: pd.DataFrame) -> None:
    """N raw rows in 100k-row groups; a share of users and movies unseen in the vocabulary."""
    rng = np.random.default_rng(1)
    writer: pq.ParquetWriter | None = None
    for start in range(0, n, 100_000):
        size = min(100_000, n - start)
        u = users.iloc[rng.integers(0, len(users), size)].reset_index(drop=True)
        m = movies.iloc[rng.integers(0, len(movies), size)].reset_index(drop=True)
        chunk = pd.concat([u, m], axis=1)[list(RAW_COLUMNS)]
        unseen = rng.random(size) < UNSEEN_SHARE
        chunk.loc[unseen, "user_id"] = 100_000 + np.arange(unseen.sum())
        chunk.loc[unseen, "movie_id"] = 100_000 + np.arange(unseen.sum())
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def peak_rss_gib() -> float:
    """This process's peak resident set size (VmHWM), GiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(args: argparse.Namespace) -> None:
    """Score one file and print a JSON line with rows, seconds and peak RSS."""
    import torch

    torch.set_num_threads(args.threads)
    from tasks.score import load_scoring_model, score_file

    t0 = time.perf_counter()
    model = load_scoring_model(str(args.model))
    t1 = time.perf_counter()
    rows, _ = score_file(model, args.input, args.output, args.chunk_rows)
    t2 = time.perf_counter()
    result = {"rows": rows, "load_s": t1 - t0, "seconds": t2 - t1, "peak_rss_gib": peak_rss_gib()}
    print(json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="Rows of the main run.")
    parser.add_argument(
        "--small-rows", type=int, default=250_000, help="Rows of the run that shows RSS is flat."
    )
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="flip-bench-score-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        pyfunc_dir, users, movies = build_model(work)
        print(f"model ready in {time.perf_counter() - t0:.1f} s", flush=True)
        runs = {}
        for n in sorted({args.small_rows, args.rows}):
            raw = work / f"raw-{n}.parquet"
            write_rows(raw, n, users, movies)
            cmd = [
                sys.executable, __file__, "--child", "--model", str(pyfunc_dir),
                "--input", str(raw), "--output", str(work / f"scores-{n}.parquet"),
                "--chunk-rows", str(args.chunk_rows), "--threads", str(args.threads),
            ]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO_ROOT)
            run = json.loads(out.stdout.strip().splitlines()[-1])
            scored = pq.read_metadata(work / f"scores-{n}.parquet").num_rows
            assert scored == n == run["rows"], (scored, n, run)
            runs[n] = run
            rate = n / run["seconds"]
            print(
                f"{n:>9} rows: load {run['load_s']:.1f} s, score {run['seconds']:.1f} s, "
                f"{rate:,.0f} rows/s, "
                f"peak RSS {run['peak_rss_gib']:.3f} GiB",
                flush=True,
            )
            raw.unlink()
    main_run = runs[args.rows]
    result = {
        "benchmark": "score",
        "rows": args.rows,
        "rows_per_s": round(args.rows / main_run["seconds"], 1),
        "peak_rss_gib": round(main_run["peak_rss_gib"], 4),
        "peak_rss_gib_by_rows": {str(n): round(r["peak_rss_gib"], 4) for n, r in runs.items()},
        "rows_per_s_by_rows": {str(n): round(n / r["seconds"], 1) for n, r in runs.items()},
        "load_s": round(main_run["load_s"], 2),
        "chunk_rows": args.chunk_rows,
        "threads": args.threads,
        "model": "FLIP_ID (DCNv2, default IDModelConfig), raw-row pyfunc, Parquet in/out",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
