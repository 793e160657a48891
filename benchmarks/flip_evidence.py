"""FLIP evidence run: does FLIP pretraining help, on a real split, with confidence intervals?

Superseded by the benchmark flow's arms (`flip benchmark --variants flip_id,control,scratch,...`,
docs/training.md): seeded random subsets, a shuffled-text control and user-level intervals.
This script keeps its original design (first rows, row-level intervals) so its past figures
can be reproduced.

    python benchmarks/flip_evidence.py --features <feature folder> --out DIR \
        --pretrained two-pass=<pretrain out>/model [--pretrained single-pass=<dir>/model] \
        --seeds 0 1 2 --subset-rows 4000 --subset-valid-rows 2000 --subset-test-rows 10000

Runs (each one `run_finetuning`, the code path of `flip finetune`; a run whose
`metrics.json` exists is reused, so the script can be stopped and started again):

- ID side on all train rows, every seed: the ID model from scratch (`scratch`) and FLIP_ID
  initialised from each pretraining output (`flip_id[<name>]`).
- PLM side (the PLM runs at every step, so on the first `--subset-rows` train rows, selected on
  the first `--subset-valid-rows` valid rows, scored on the first `--subset-test-rows` test
  rows), first seed only: the ID model from scratch with the same recipe, PLM-only (FLIP_PLM
  from the PLM's original weights), FLIP_PLM and FLIP from the first pretraining output.

Reported on test: AUC and log loss with 95% bootstrap intervals (rows resampled), the same on
warm and cold-start users (cold: the user is unseen in train), and paired bootstrap intervals of
the AUC differences that the method claims (FLIP_ID - scratch per seed; FLIP - ID model,
FLIP - PLM-only on the subset's rows). Prints a Markdown report and, last, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from flip_core.config import FlipConfig, load_config
from flip_core.metrics import binary_auc, binary_logloss

ID_RECIPE = [
    "training.epochs=2",
    "training.eval_every_steps=127",
    "training.early_stopping_patience=3",
]
PLM_RECIPE = [
    "training.batch_size=32",
    "training.epochs=2",
    "training.eval_every_steps=null",
    "training.checkpoint_every_steps=50",
]


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--pretrained", action="append", default=[], help="NAME=DIR (repeatable; first is main)"
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--subset-rows", type=int, default=4000)
    ap.add_argument("--subset-valid-rows", type=int, default=2000)
    ap.add_argument("--subset-test-rows", type=int, default=10000)
    ap.add_argument("--skip-plm", action="store_true", help="ID-side runs only")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    return ap.parse_args()


def finetune(
    args: argparse.Namespace,
    name: str,
    variant: str,
    pretrained: Path | None,
    overrides: list[str],
) -> Path:
    """One finetuning run into `<out>/<name>` (reused when finished); returns its folder."""
    from flip_core.flip_stages import run_finetuning

    out = args.out / name
    if (out / "metrics.json").is_file():
        print(f"[{name}] reused", flush=True)
        return out
    config: FlipConfig = load_config(
        None,
        [
            "training.progress=false",
            f"training.num_threads={args.threads}",
            *args.overrides,
            *overrides,
        ],
    )
    start = time.perf_counter()
    resume = "latest" if (out / "checkpoints").is_dir() else None
    result = run_finetuning(config, args.features, out, variant, pretrained, resume=resume)  # type: ignore[arg-type]
    took = time.perf_counter() - start
    (out / "run.json").write_text(
        json.dumps({"variant": variant, "pretrained": str(pretrained), "seconds": took}),
        encoding="utf-8",
    )
    print(f"[{name}] {took:.0f} s, test_auc {result.metrics.get('test_auc', math.nan):.4f}")
    return out


def load_predictions(run: Path, rows: int | None = None) -> dict[str, np.ndarray]:
    """Test labels, probabilities and the cold-user mask of a run (first `rows` rows)."""
    table = pq.read_table(run / "predictions" / "test.parquet")
    if rows is not None:
        table = table.slice(0, rows)
    return {name: table[name].to_numpy() for name in ("label", "prob", "user_cold")}


def bootstrap_indices(n: int, draws: int, seed: int = 0) -> np.ndarray:
    """`draws` resamples of `n` row indices (one matrix, shared by every model: paired)."""
    return np.random.default_rng(seed).integers(0, n, size=(draws, n), dtype=np.int64)


def interval(values: np.ndarray) -> tuple[float, float]:
    """Central 95% percentile interval."""
    finite = values[np.isfinite(values)]
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return float(lo), float(hi)


def auc_draws(label: np.ndarray, prob: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """AUC on every bootstrap resample (exact, via ranks)."""
    return np.array([binary_auc(label[i], prob[i]) for i in draws])


def summarize(preds: dict[str, np.ndarray], draws: int) -> dict[str, Any]:
    """AUC/logloss with bootstrap intervals, overall and on warm/cold users."""
    out: dict[str, Any] = {}
    parts = {"all": np.ones(len(preds["label"]), bool), "warm": ~preds["user_cold"]}
    parts["cold"] = preds["user_cold"]
    for part, mask in parts.items():
        label, prob = preds["label"][mask], preds["prob"][mask]
        if label.size == 0:
            continue
        idx = bootstrap_indices(label.size, draws, seed=1)
        out[part] = {
            "rows": int(label.size),
            "auc": binary_auc(label, prob),
            "auc_ci": interval(auc_draws(label, prob, idx)),
            "logloss": binary_logloss(label, prob),
            "logloss_ci": interval(np.array([binary_logloss(label[i], prob[i]) for i in idx])),
        }
    return out


def paired_difference(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], draws: int
) -> dict[str, Any]:
    """AUC(a) - AUC(b) on the same rows, with a paired bootstrap interval."""
    if not np.array_equal(a["label"], b["label"]):
        raise ValueError("paired comparison over different rows")
    idx = bootstrap_indices(a["label"].size, draws, seed=2)
    diffs = auc_draws(a["label"], a["prob"], idx) - auc_draws(b["label"], b["prob"], idx)
    point = binary_auc(a["label"], a["prob"]) - binary_auc(b["label"], b["prob"])
    return {"auc_diff": point, "ci": interval(diffs), "p_le_0": float((diffs <= 0).mean())}


def _fmt(s: dict[str, Any], key: str) -> str:
    lo, hi = s[f"{key}_ci"]
    return f"{s[key]:.4f} [{lo:.4f}, {hi:.4f}]"


def _row(name: str, summary: dict[str, Any]) -> str:
    cells = [_fmt(summary["all"], "auc"), _fmt(summary["all"], "logloss")]
    for part in ("warm", "cold"):
        cells.append(_fmt(summary[part], "auc") if part in summary else "-")
    return f"| {name} | {summary['all']['rows']} | " + " | ".join(cells) + " |"


def main() -> None:
    """Run what is missing, then print the report and the JSON line."""
    args = parse_args()
    pretrained = dict(item.split("=", 1) for item in args.pretrained)
    if not pretrained:
        raise SystemExit("error: give at least one --pretrained NAME=DIR")
    args.out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, Path] = {}
    for seed in args.seeds:
        seed_set = [*ID_RECIPE, f"training.seed={seed}"]
        runs[f"scratch s{seed}"] = finetune(args, f"scratch-s{seed}", "flip_id", None, seed_set)
        for name, directory in pretrained.items():
            runs[f"flip_id[{name}] s{seed}"] = finetune(
                args, f"flip_id-{name}-s{seed}", "flip_id", Path(directory), seed_set
            )
    main_name, main_dir = next(iter(pretrained.items()))
    subset = [
        *PLM_RECIPE,
        f"training.seed={args.seeds[0]}",
        "finetune.sample=first",  # this script's design (now superseded, see the docstring)
        f"finetune.max_rows={args.subset_rows}",
        f"finetune.max_valid_rows={args.subset_valid_rows}",
        f"finetune.max_test_rows={args.subset_test_rows}",
    ]
    sub_runs: dict[str, Path] = {}
    if not args.skip_plm:
        sub_runs["ID model (scratch)"] = finetune(args, "sub-scratch", "flip_id", None, subset)
        sub_runs["PLM-only"] = finetune(args, "sub-plm-only", "flip_plm", None, subset)
        sub_runs[f"FLIP_PLM[{main_name}]"] = finetune(
            args, "sub-flip_plm", "flip_plm", Path(main_dir), subset
        )
        sub_runs[f"FLIP[{main_name}]"] = finetune(args, "sub-flip", "flip", Path(main_dir), subset)
    report(args, runs, sub_runs, list(pretrained))


def report(
    args: argparse.Namespace,
    runs: dict[str, Path],
    sub_runs: dict[str, Path],
    pretrained_names: list[str],
) -> None:
    """Markdown tables and the final JSON object."""
    draws = args.bootstrap
    preds = {name: load_predictions(path) for name, path in runs.items()}
    result: dict[str, Any] = {"benchmark": "flip_evidence", "all_rows": {}, "subset": {}}
    print("\n### All train rows (ID side), test:", len(next(iter(preds.values()))["label"]), "rows")
    print("\n| run | rows | test AUC [95% CI] | test logloss | warm-user AUC | cold-user AUC |")
    print("|---|---|---|---|---|---|")
    for name, p in preds.items():
        result["all_rows"][name] = summarize(p, draws)
        print(_row(name, result["all_rows"][name]))
    print("\n| comparison | AUC difference [95% paired CI] | share of resamples <= 0 |")
    print("|---|---|---|")
    diffs: dict[str, Any] = {}
    for pre in pretrained_names:
        per_seed = []
        for seed in args.seeds:
            d = paired_difference(
                preds[f"flip_id[{pre}] s{seed}"], preds[f"scratch s{seed}"], draws
            )
            diffs[f"flip_id[{pre}] - scratch s{seed}"] = d
            per_seed.append(d["auc_diff"])
            lo, hi = d["ci"]
            print(
                f"| FLIP_ID[{pre}] - scratch, seed {seed} | {d['auc_diff']:+.4f} "
                f"[{lo:+.4f}, {hi:+.4f}] | {d['p_le_0']:.3f} |"
            )
        std = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
        mean = statistics.mean(per_seed)
        print(f"| FLIP_ID[{pre}] - scratch, mean over seeds | {mean:+.4f} ± {std:.4f} (std) | |")
    result["differences"] = diffs
    if sub_runs:
        rows = args.subset_test_rows
        sub = {name: load_predictions(path, rows) for name, path in sub_runs.items()}
        sub[f"ID model, all train rows (scratch s{args.seeds[0]})"] = load_predictions(
            runs[f"scratch s{args.seeds[0]}"], rows
        )
        print(f"\n### PLM side: {args.subset_rows} train rows, first {rows} test rows")
        print("\n| run | rows | test AUC [95% CI] | test logloss | warm-user AUC | cold-user AUC |")
        print("|---|---|---|---|---|---|")
        for name, p in sub.items():
            result["subset"][name] = summarize(p, draws)
            print(_row(name, result["subset"][name]))
        flip = next(p for n, p in sub.items() if n.startswith("FLIP["))
        print("\n| comparison (same rows) | AUC difference [95% paired CI] | share <= 0 |")
        print("|---|---|---|")
        for other in sub:
            if other.startswith("FLIP["):
                continue
            d = paired_difference(flip, sub[other], draws)
            diffs[f"FLIP - {other}"] = d
            lo, hi = d["ci"]
            diff = f"{d['auc_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
            print(f"| FLIP - {other} | {diff} | {d['p_le_0']:.3f} |")
    print(json.dumps(result, default=float))


if __name__ == "__main__":
    main()
