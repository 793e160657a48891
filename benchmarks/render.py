"""Benchmark: prompt render + tokenize of the ml-1m ratings vs a naive per-row tokenizer call.

Ours: each distinct field sentence is tokenized once and rows are assembled with numpy
(`flip_core.data.tokenization.render_and_tokenize`). Baseline: what a per-item `__getitem__`
does, i.e. render one row's text and call the tokenizer on it (with offsets, to find the spans);
timed on the first `--baseline-rows` rows and reported as rows/s. Both are in memory, from the
split tables to token ids + spans. Then the full prompt stage (`render_features`: read splits,
render, tokenize, write Parquet + manifest) runs twice; the second run hits the cache.

Run: `.venv/bin/python benchmarks/render.py` (add --raw-dir DIR for
other data; synthetic data when ../shared/data/ml-1m is absent). Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flip_core.data.features import build_splits
from flip_core.data.fields import readable_value
from flip_core.data.prompts import PromptTemplate
from flip_core.data.render import prompts_key, render_features
from flip_core.data.synth import write_synthetic_movielens
from flip_core.data.tokenization import FieldTokenizer, _value_token_span, render_and_tokenize
from flip_core.lake import ingest_dataset
from flip_core.spec import SPLITS, FieldSpec, load_dataset_spec

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RAW = REPO.parent / "shared" / "data" / "ml-1m"


def naive_rows(
    table: pa.Table, fields: list[FieldSpec], template: PromptTemplate, tokenizer: Any
) -> list[list[int]]:
    """Per-row baseline: render the text, call the tokenizer, map value chars to tokens."""
    names = [f.name for f in fields]
    columns = {f.name: table[f"{f.name}_raw"].to_pylist() for f in fields}
    out = []
    for i in range(table.num_rows):
        values = {f.name: readable_value(f, columns[f.name][i]) for f in fields}
        text, char_spans = template.render(values, names)
        enc = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=128)
        offsets = enc["offset_mapping"]
        _spans = [_value_token_span(offsets, a, b) for a, b in char_spans]
        out.append(enc["input_ids"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, default=DEFAULT_RAW)
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="flip-bench-render-"))
    raw = args.raw_dir
    if not (raw / "users.dat").is_file():
        raw = work / "raw"
        write_synthetic_movielens(raw, users=3000, movies=3000, ratings_per_user=160, seed=0)
        print(f"{args.raw_dir} not found: using synthetic data in {raw}")
    spec = load_dataset_spec(REPO / "configs" / "datasets" / "ml-1m.yaml")
    lake = ingest_dataset(raw, work / "data", spec).lake_dir
    splits = build_splits(lake, work / "features", spec, spec.protocol("ml1m-time-811"))
    from flip_core.data.tokenization import load_tokenizer

    tokenizer = load_tokenizer("minilm-l6")
    ftok = FieldTokenizer(tokenizer)
    fields = list(spec.fields)
    template = PromptTemplate.for_fields(spec.prompt, fields)
    tables = [pq.read_table(splits.splits_dir / "splits" / f"{s}.parquet") for s in SPLITS]
    table = pa.concat_tables(tables)
    n = table.num_rows

    start = time.perf_counter()
    rows = render_and_tokenize(
        {f.name: table[f"{f.name}_raw"] for f in fields}, fields, template, ftok, max_length=128
    )
    ours_s = time.perf_counter() - start

    sample = table.slice(0, min(args.baseline_rows, n))
    start = time.perf_counter()
    baseline_ids = naive_rows(sample, fields, template, tokenizer)
    base_s = time.perf_counter() - start
    same = baseline_ids == rows.input_ids.slice(0, sample.num_rows).to_pylist()

    key = prompts_key(splits.splits_hash, template, ftok.hash, 128)
    shutil.rmtree(splits.splits_dir / "prompts" / key[:16], ignore_errors=True)
    start = time.perf_counter()
    first = render_features(splits.splits_dir, ftok, 128)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    again = render_features(splits.splits_dir, ftok, 128)
    cached_s = time.perf_counter() - start
    assert not first.cached and again.cached

    rows_per_s = n / ours_s
    base_per_s = sample.num_rows / base_s
    print(f"rows: {n:,} (ml1m-time-811, all splits), data {raw}")
    print(f"ours, render + tokenize in memory: {ours_s:.2f} s = {rows_per_s:,.0f} rows/s")
    print(
        f"baseline, one tokenizer call per row: {base_s:.2f} s on {sample.num_rows:,} rows = "
        f"{base_per_s:,.0f} rows/s (extrapolated: {n / base_per_s:.1f} s for all rows)"
    )
    print(f"baseline ids identical to ours on those rows: {same}")
    print(f"ratio: {rows_per_s / base_per_s:.1f}x")
    print(
        f"prompt stage end to end (read, render, tokenize, write, manifest): {first_s:.2f} s "
        f"= {n / first_s:,.0f} rows/s; cached rerun {cached_s:.3f} s "
        f"({cached_s / first_s:.1%} of the first)"
    )
    result = {
        "benchmark": "render",
        "rows_per_s": round(rows_per_s, 1),
        "baseline_rows_per_s": round(base_per_s, 1),
        "ratio": round(rows_per_s / base_per_s, 2),
        "cached_fraction": round(cached_s / first_s, 4),
        "rows": n,
        "baseline_rows": sample.num_rows,
        "end_to_end_rows_per_s": round(n / first_s, 1),
        "ids_match": same,
    }
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
