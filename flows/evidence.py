"""The FLIP evidence: figures as data (`docs/evidence.json`) and the tables rendered from them.

`build_evidence` reads the per-row test predictions of every (arm, seed) run of the benchmark
flow and computes, for each claimed comparison, the paired difference of seed means with a
user-level bootstrap interval (`flip_core.evidence`), overall and on warm users, cold users and
long-tail items. `render_evidence` turns that JSON into Markdown; nothing in the tables is typed
by hand. `python -m flows.evidence docs/evidence.json docs/results.md` re-renders the tables.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from flip_core.config import FlipConfig
from flip_core.evidence import SLICES, ScoredRows, seed_mean_difference, seed_stats
from flip_core.metrics import binary_auc

BEGIN = "<!-- evidence:begin -->"
END = "<!-- evidence:end -->"
PEER_DCNV2_TEST_AUC = 0.7755  # FuxiCTR 2.3.10 DCNv2 on ml1m-time-811 (issue 21), 3 seeds
TARGET_GAIN = 0.002

# key in evidence.json -> (arm a, arm b); each arm's runs are scored on the same test rows
COMPARISONS: dict[str, tuple[str, str]] = {
    "flip_id_minus_scratch": ("flip_id", "scratch"),
    "flip_id_minus_control": ("flip_id", "control"),
    "flip_minus_plm_only": ("flip", "plm_only"),
    "flip_minus_id_only": ("flip", "id_only"),
}
ARM_TEXT = {
    "flip_id": "FLIP_ID: ID model from FLIP pretraining, finetuned alone",
    "control": "control: FLIP_ID from pretraining on shuffled text (row-text alignment destroyed)",
    "scratch": "scratch: the same ID model from random init",
    "flip": "FLIP: ID model + PLM, both from FLIP pretraining, fused",
    "flip_plm": "FLIP_PLM: PLM from FLIP pretraining + linear head",
    "plm_only": "PLM-only: the PLM's original weights + linear head",
    "id_only": "ID-only: the ID model from random init, on the PLM-side rows",
}


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    """A run's test predictions (label, prob, user_cold, user, item_train_count)."""
    table = pq.read_table(path)
    return {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}


def _slice_aucs(rows: ScoredRows, prob: np.ndarray) -> dict[str, float]:
    out = {}
    for name in SLICES:
        mask = rows.slices[name]
        out[name] = binary_auc(rows.labels[mask], prob[mask]) if mask.any() else float("nan")
    return out


def build_evidence(
    config: FlipConfig,
    runs: Mapping[str, Mapping[int, Path]],
    run_metrics: Mapping[str, Mapping[int, Mapping[str, float]]],
    dcnv2_test_aucs: Sequence[float],
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """The evidence document. `runs`: arm -> seed -> test predictions file; `run_metrics`: the
    runs' metrics.json; `dcnv2_test_aucs`: DCNv2 test AUC per seed; `meta`: command, seeds,
    pretrain_rows, plm_layers, wall time and the like (copied in)."""
    bench = config.benchmark
    preds = {
        arm: {s: load_predictions(p) for s, p in by_seed.items()} for arm, by_seed in runs.items()
    }
    arms: dict[str, Any] = {}
    scored: dict[str, ScoredRows] = {}
    for arm, by_seed in preds.items():
        first = next(iter(by_seed.values()))
        rows = ScoredRows.build(
            first["label"], first["user"], first["user_cold"], first["item_train_count"],
            bench.long_tail_below,
        )  # fmt: skip
        for seed, p in by_seed.items():
            if not np.array_equal(p["label"], first["label"]) or not np.array_equal(
                p["user"], first["user"]
            ):
                raise ValueError(f"{arm}: seed {seed} was scored on other test rows")
        scored[arm] = rows
        per_seed = {s: _slice_aucs(rows, p["prob"]) for s, p in by_seed.items()}
        entry: dict[str, Any] = {
            "seeds": sorted(by_seed),
            "test_rows": int(rows.labels.size),
            "test_users": int(np.unique(rows.users).size),
            "slice_rows": {k: int(v.sum()) for k, v in rows.slices.items()},
        }
        for name in SLICES:
            entry[f"test_auc_{name}"] = seed_stats([per_seed[s][name] for s in sorted(by_seed)])
        for key in ("valid_auc", "fusion_a"):
            values = [m[key] for m in run_metrics.get(arm, {}).values() if key in m]
            if values:
                entry[key] = seed_stats(values)
        arms[arm] = entry
    evidence: dict[str, Any] = {
        **meta,
        "dcnv2_test_auc": float(np.mean(dcnv2_test_aucs)) if dcnv2_test_aucs else None,
        "dcnv2_test_auc_seeds": list(map(float, dcnv2_test_aucs)),
        "bootstrap_draws": bench.bootstrap,
        "long_tail_below": bench.long_tail_below,
        "arms": arms,
        "slices": {},
    }
    for key, (a, b) in COMPARISONS.items():
        evidence[key] = None
        if a not in preds or b not in preds:
            continue
        if not np.array_equal(scored[a].labels, scored[b].labels):
            raise ValueError(f"{key}: {a} and {b} were scored on different test rows")
        by_slice = {}
        for name in SLICES:
            diff = seed_mean_difference(
                scored[a],
                [p["prob"] for p in preds[a].values()],
                [p["prob"] for p in preds[b].values()],
                name,
                draws=bench.bootstrap,
                seed=0,
            )
            by_slice[name] = diff.as_dict() if diff is not None else None
        evidence[key] = by_slice["overall"]
        evidence["slices"][key] = by_slice
    evidence["targets"] = targets(evidence)
    return evidence


def targets(evidence: Mapping[str, Any]) -> dict[str, bool | None]:
    """Whether each target of issue 21 is met (None: not measured)."""

    def above_zero(key: str, at_least: float = 0.0) -> bool | None:
        d = evidence.get(key)
        return None if d is None else bool(d["low"] > 0 and d["mean"] >= at_least)

    auc = evidence.get("dcnv2_test_auc")
    return {
        f"dcnv2_test_auc >= {PEER_DCNV2_TEST_AUC}": None
        if auc is None
        else auc >= PEER_DCNV2_TEST_AUC,
        f"flip_id - scratch >= +{TARGET_GAIN}, interval above 0": above_zero(
            "flip_id_minus_scratch", TARGET_GAIN
        ),
        "flip_id - control: interval above 0": above_zero("flip_id_minus_control"),
        "flip - plm_only: interval above 0": above_zero("flip_minus_plm_only"),
        "flip - id_only: interval above 0": above_zero("flip_minus_id_only"),
    }


def device_description() -> str:
    """Where the runs trained, in words."""
    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    return f"cpu: {cpu}, torch threads {torch.get_num_threads()}"


def git_commit(root: Path) -> str | None:
    """The checkout's commit (with `+dirty` when it has changes), or None outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


# ---------------------------------------------------------------- rendering


def _pm(stats: Mapping[str, float] | None) -> str:
    if not stats:
        return "-"
    if stats.get("n", 2) < 2:  # one seed: no spread to show
        return f"{stats['mean']:.4f} (1 seed)"
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def _diff(d: Mapping[str, float] | None) -> str:
    if d is None:
        return "-"
    return f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"


def _met(value: bool | None) -> str:
    return "not measured" if value is None else ("**met**" if value else "**not met**")


def render_evidence(evidence: Mapping[str, Any]) -> str:
    """Markdown tables of the evidence document (what goes between the evidence markers)."""
    source = evidence.get("evidence_file", "docs/evidence.json")
    lines = [
        f"Written by the benchmark flow from `{source}`"
        f" (commit `{evidence.get('commit')}`, {evidence.get('generated_utc')}, device "
        f"{evidence.get('device')}, flow wall time {evidence.get('wall_seconds', 0) / 60:.1f} min"
        " for what this invocation trained; cached runs count as zero). Produced by:",
        "",
        "```bash",
        str(evidence.get("command")),
        "```",
        "",
        *placeholder_note(str(evidence.get("command"))),
        f"Seeds {evidence.get('seeds')} (PLM side {evidence.get('plm_side_seeds')}); pretraining "
        f"on {evidence.get('pretrain_rows')} train rows (random sample), encoder "
        f"`{evidence.get('plm')}` with {evidence.get('plm_layers')} layer(s); ID-side arms on "
        f"{evidence.get('id_side_train_rows')} train rows, PLM-side arms on "
        f"{evidence.get('plm_side_train_rows')}. Intervals: 95%, {evidence.get('bootstrap_draws')} "
        "user-level bootstrap draws of the seed-mean difference (users resampled, all their rows "
        f"kept). Long tail: items with fewer than {evidence.get('long_tail_below')} train events.",
        "",
        "| arm | seeds | test rows (users) | test AUC | warm users | cold users "
        "| long-tail items |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, entry in evidence.get("arms", {}).items():
        cells = [_pm(entry.get(f"test_auc_{name}")) for name in SLICES]
        rows = f"{entry['test_rows']:,} ({entry['test_users']:,})"
        lines.append(
            f"| {ARM_TEXT.get(arm, arm)} | {len(entry['seeds'])} | {rows} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "| comparison (seed-mean AUC difference [95% user-level CI]) | overall | warm users "
        "| cold users | long-tail items |",
        "|---|---|---|---|---|",
    ]
    for key in COMPARISONS:
        by_slice = evidence.get("slices", {}).get(key)
        if by_slice is None:
            lines.append(f"| {key} | not run | | | |")
            continue
        lines.append(f"| {key} | " + " | ".join(_diff(by_slice.get(n)) for n in SLICES) + " |")
    auc = evidence.get("dcnv2_test_auc")
    seeds = evidence.get("dcnv2_test_auc_seeds") or []
    lines += [
        "",
        f"DCNv2 test AUC, mean over {len(seeds)} seed(s): "
        + (
            f"{auc:.4f} (per seed {', '.join(f'{v:.4f}' for v in seeds)})"
            if auc
            else "not measured"
        )
        + f"; best peer on this split: {PEER_DCNV2_TEST_AUC}.",
        "",
        "| target | status |",
        "|---|---|",
    ]
    lines += [f"| {name} | {_met(value)} |" for name, value in evidence.get("targets", {}).items()]
    fusion = evidence.get("arms", {}).get("flip", {}).get("fusion_a")
    if fusion:
        lines += ["", f"FLIP fusion weight a (ID share) of the selected models: {_pm(fusion)}."]
    return "\n".join(lines) + "\n"


def write_between(
    path: Path, block: str, begin: str = BEGIN, end: str = END, title: str = "FLIP evidence"
) -> None:
    """Replace the text between `begin` and `end` in `path` (append a section if absent)."""
    wrapped = f"{begin}\n{block}{end}"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + wrapped + tail
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n" + wrapped + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def placeholder_note(command: str) -> list[str]:
    """What a recorded command's placeholders stand for (lines, with a blank line after)."""
    notes = {
        "DATA/": "`DATA` is the folder that holds your copy of the raw files",
        "CONFIG/": "`CONFIG` is the folder of the experiment YAML",
    }
    said = [text for mark, text in notes.items() if f" {mark}" in command]
    return [f"{'; '.join(said)}.", ""] if said else []


def main(argv: Sequence[str] | None = None) -> None:
    """Re-render the evidence tables: `python -m flows.evidence EVIDENCE.json RESULTS.md`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        raise SystemExit("usage: python -m flows.evidence EVIDENCE.json RESULTS.md")
    evidence = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    write_between(Path(args[1]), render_evidence(evidence))


if __name__ == "__main__":
    main()
