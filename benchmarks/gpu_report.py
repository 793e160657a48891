"""Turn the GPU run's results file into evidence: figures as data and the table from them.

    python benchmarks/gpu_report.py OUT/flip_gpu_results.json \
        [--json docs/gpu_evidence.json] [--results docs/results.md]

Reads `flip_gpu_results.json` (written by `benchmarks/gpu_run.sh`), computes for each claimed
comparison the paired seed-mean AUC difference with a user-level bootstrap interval (the same
`flip_core.evidence` code as the CPU flow), overall and on warm users, cold users and long-tail
items, writes them as JSON and renders the table between `<!-- gpu:begin -->` and
`<!-- gpu:end -->` in the results file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from flip_core.evidence import SLICES, ScoredRows, seed_mean_difference, seed_stats
from flows.evidence import COMPARISONS, write_between

BEGIN, END = "<!-- gpu:begin -->", "<!-- gpu:end -->"


def gpu_evidence(result: dict[str, Any], draws: int = 1000) -> dict[str, Any]:
    """Per-arm seed statistics and the four comparisons (each per slice)."""
    rows = ScoredRows.build(
        result["test_labels"],
        np.asarray(result["test_users"]),
        result["test_cold"],
        result["test_item_train_count"],
    )
    probs: dict[str, list[np.ndarray]] = {}
    arms: dict[str, Any] = {}
    for run in result["runs"]:
        probs.setdefault(run["arm"], []).append(np.asarray(run["test_probs"], dtype=np.float64))
    for arm in probs:
        runs = [r for r in result["runs"] if r["arm"] == arm]
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in runs]}
        for key in ("test_auc", "test_warm_auc", "test_cold_auc", "test_long_tail_auc"):
            entry[key] = seed_stats([float(r[key]) for r in runs])  # NaN when a slice is empty
        arms[arm] = entry
    out: dict[str, Any] = {
        "device": result["device"],
        "wall_s": result["wall_s"],
        "timings": result["timings"],
        "args": result["args"],
        "rows": result["rows"],
        "arms": arms,
        "slices": {},
    }
    for key, (a, b) in COMPARISONS.items():
        out[key] = None
        if a in probs and b in probs:
            by_slice = {}
            for name in SLICES:
                d = seed_mean_difference(rows, probs[a], probs[b], name, draws=draws)
                by_slice[name] = d.as_dict() if d is not None else None
            out[key] = by_slice["overall"]
            out["slices"][key] = by_slice
    return out


def render(ev: dict[str, Any], command: str) -> str:
    """Markdown from the GPU evidence."""

    def diff(d: dict[str, float] | None) -> str:
        return "-" if d is None else f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"

    lines = [
        f"Written by `{command}`; device {ev['device']}, wall {ev['wall_s'] / 60:.1f} min.",
        "",
        "| arm | seeds | test AUC | warm users | cold users | long-tail items |",
        "|---|---|---|---|---|---|",
    ]
    for arm, e in ev["arms"].items():
        cells = [
            f"{e[k]['mean']:.4f} ± {e[k]['std']:.4f}"
            for k in ("test_auc", "test_warm_auc", "test_cold_auc", "test_long_tail_auc")
        ]
        lines.append(f"| {arm} | {len(e['seeds'])} | " + " | ".join(cells) + " |")
    lines += ["", "| comparison | " + " | ".join(SLICES) + " |", "|---|---|---|---|---|"]
    for key in COMPARISONS:
        by_slice = ev["slices"].get(key)
        cells = [diff(by_slice.get(n)) if by_slice else "not run" for n in SLICES]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results_file", type=Path)
    ap.add_argument("--json", type=Path, default=Path("docs/gpu_evidence.json"))
    ap.add_argument("--results", type=Path, default=Path("docs/results.md"))
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    result = json.loads(args.results_file.read_text(encoding="utf-8"))
    ev = gpu_evidence(result, args.bootstrap)
    args.json.write_text(json.dumps(ev, indent=2) + "\n", encoding="utf-8")
    command = f"python benchmarks/gpu_report.py {args.results_file}"
    write_between(args.results, render(ev, command), BEGIN, END, "GPU full-scale run")


if __name__ == "__main__":
    main()
