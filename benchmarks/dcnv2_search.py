"""Summarise the DCNv2 search (`benchmarks/dcnv2_search.sh`): figures as data, table from them.

    python benchmarks/dcnv2_search.py RUNS_DIR [--json docs/dcnv2_search.json]
        [--results docs/results.md]

Reads every `<RUNS_DIR>/<name>[-s<seed>]/metrics.json` (written by `flip train`), picks the
recipe with the best seed-0 valid AUC (test is never looked at for the choice), and writes the
per-run figures, the chosen recipe's seed mean ± std and the min_count=1 twin's (cold-user AUC
before/after training the OOV embedding) to the JSON, then renders them between
`<!-- dcnv2-search:begin -->` and `<!-- dcnv2-search:end -->` in the results file.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path
from typing import Any

from flows.evidence import write_between

BEGIN, END = "<!-- dcnv2-search:begin -->", "<!-- dcnv2-search:end -->"
PEER = 0.7755
# the same recipe with min_count 1 and 2 (weight_decay 1e-5 is a no-op in float32 AdamW here)
OOV_PAIR = ("h400x3-d0.1-mc1", "h400x3-d0.1-wd-mc2")
KEYS = ("valid_auc", "test_auc", "test_logloss", "test_warm_auc", "test_cold_auc")


def collect(runs: Path) -> dict[str, Any]:
    """Per-run figures, the valid-chosen recipe and seed statistics."""
    per_run: dict[str, dict[str, Any]] = {}
    for path in sorted(runs.glob("*/metrics.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        m = re.fullmatch(r"(.+?)(?:-s(\d+))?", path.parent.name)
        assert m is not None
        figures = {**data["valid"], **data["test"]}
        per_run[path.parent.name] = {
            "recipe": m.group(1),
            "seed": int(data["seed"]),
            **{k: figures[k] for k in KEYS},
            "best_step": data["best_step"],
            "global_step": data["global_step"],
            "wall_seconds": data["wall_seconds"],
        }
    seed0 = {r["recipe"]: r for r in per_run.values() if r["seed"] == 0}
    best = max(r["valid_auc"] for r in seed0.values())
    tied = sorted(name for name, r in seed0.items() if r["valid_auc"] == best)
    seeds_run = {n: sum(r["recipe"] == n for r in per_run.values()) for n in tied}
    chosen = max(tied, key=lambda name: seeds_run[name])  # a tie: the one run on more seeds

    def seeds(recipe: str) -> dict[str, Any]:
        rows = [r for r in per_run.values() if r["recipe"] == recipe]
        out: dict[str, Any] = {"seeds": sorted(r["seed"] for r in rows)}
        for k in KEYS:
            values = [r[k] for r in rows]
            out[k] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
        return out

    before, after = OOV_PAIR
    return {
        "runs": per_run,
        "chosen_on_valid": chosen,
        "tied_on_valid": tied,
        "chosen": seeds(chosen),
        "oov_before_after": (
            {
                "min_count_1": {"recipe": before, **seeds(before)},
                "min_count_2": {"recipe": after, **seeds(after)},
            }
            if before in seed0 and after in seed0
            else None
        ),
        "peer_test_auc": PEER,
    }


def render(summary: dict[str, Any], command: str) -> str:
    """Markdown from the summary."""
    lines = [
        f"Written by `{command}` from `flip train` metrics (CPU, 1 torch thread each).",
        "",
        "| run | seed | valid AUC | test AUC | test logloss | warm-user AUC | cold-user AUC "
        "| best step / steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in summary["runs"].items():
        lines.append(
            f"| {name} | {r['seed']} | {r['valid_auc']:.4f} | {r['test_auc']:.4f} | "
            f"{r['test_logloss']:.4f} | {r['test_warm_auc']:.4f} | {r['test_cold_auc']:.4f} | "
            f"{r['best_step']} / {r['global_step']} |"
        )
    c = summary["chosen"]
    met = c["test_auc"]["mean"] >= PEER and len(c["seeds"]) >= 3
    tie = ""
    if len(summary["tied_on_valid"]) > 1:
        tie = f" (tied with {', '.join(summary['tied_on_valid'])}; the one run on more seeds)"
    lines += [
        "",
        f"Chosen on seed-0 valid AUC: `{summary['chosen_on_valid']}`{tie}; "
        f"over seeds {c['seeds']}: "
        f"test AUC {c['test_auc']['mean']:.4f} ± {c['test_auc']['std']:.4f}, cold-user AUC "
        f"{c['test_cold_auc']['mean']:.4f} ± {c['test_cold_auc']['std']:.4f}. Target (peer "
        f"{PEER}, 3 seeds): **{'met' if met else 'not met'}** (mean {c['test_auc']['mean']:.5f}).",
    ]
    pair = summary.get("oov_before_after")
    if pair:
        lines.append("")
        lines.append("Training the OOV embedding (the same recipe, min_count 1 vs 2):")
        for key, label in (("min_count_1", "OOV never trained"), ("min_count_2", "OOV trained")):
            r = pair[key]
            lines.append(
                f"- `{r['recipe']}` ({label}), seeds {r['seeds']}: test AUC "
                f"{r['test_auc']['mean']:.4f} ± {r['test_auc']['std']:.4f}, cold-user AUC "
                f"{r['test_cold_auc']['mean']:.4f} ± {r['test_cold_auc']['std']:.4f}"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("--json", type=Path, default=Path("docs/dcnv2_search.json"))
    ap.add_argument("--results", type=Path, default=Path("docs/results.md"))
    args = ap.parse_args()
    summary = collect(args.runs)
    args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    command = "python benchmarks/dcnv2_search.py RUNS"  # RUNS: the folder of the runs
    write_between(args.results, render(summary, command), BEGIN, END, "DCNv2 search")


if __name__ == "__main__":
    main()
