"""Test AUC / logloss of ID backbones over several seeds (the table in docs/results.md).

    .venv/bin/python benchmarks/id_results.py --features <feature folder> \
        --models dcnv2 deepfm autoint --seeds 0 1 2 --set training.epochs=3

Each (model, seed) is one `flip train` run (same code path, `train_id_model`), selected on
valid; test is only reported. Prints a Markdown table (mean ± sample std over seeds) and, last,
one JSON object with every run's figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["dcnv2", "deepfm", "autoint"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("/tmp/flip-id-results"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    return parser.parse_args()


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def main() -> None:
    """Train every (model, seed), print the table and the JSON line."""
    from flip_core.config import load_config
    from flip_core.training.id_training import train_id_model

    args = parse_args()
    config = load_config(None, ["training.progress=false", *args.overrides])
    runs: list[dict[str, Any]] = []
    for model in args.models:
        for seed in args.seeds:
            report = train_id_model(
                args.features, args.out / f"{model}-s{seed}", config, model, seed
            )
            run = {
                "model": model,
                "seed": seed,
                "valid_auc": report.valid["valid_auc"],
                "test_auc": report.test["test_auc"],
                "test_logloss": report.test["test_logloss"],
                "test_cold_auc": report.test.get("test_cold_auc"),
                "best_step": report.best_step,
                "samples_per_s": report.samples_per_s,
                "wall_seconds": report.wall_seconds,
            }
            print(json.dumps(run), flush=True)
            runs.append(run)
    print("| model | valid AUC | test AUC | test logloss | cold-user test AUC | samples/s |")
    print("|---|---|---|---|---|---|")
    for model in args.models:
        rows = [r for r in runs if r["model"] == model]
        cells = [
            _mean_std([r[key] for r in rows])
            for key in ("valid_auc", "test_auc", "test_logloss", "test_cold_auc")
        ]
        speed = statistics.mean(r["samples_per_s"] for r in rows)
        print(f"| {model} | {' | '.join(cells)} | {speed:,.0f} |")
    print(json.dumps({"benchmark": "id_results", "config": args.overrides, "runs": runs}))


if __name__ == "__main__":
    main()
