"""The benchmark behind docs/results.md: models (and FLIP variants) x seeds on one protocol.

One flow run trains every (model, seed) pair on the same features, aggregates test AUC and
logloss as mean ± std over seeds, and rewrites the table between the markers
`<!-- benchmark:begin -->` and `<!-- benchmark:end -->` in the results file (the rest of the
file, prose written by people, is kept). Finished pairs are cache hits on a rerun.

With `variants` (the FLIP arms, see `ARMS`), it also pretrains once per pretraining kind (FLIP,
and the shuffled-text control when an arm needs it; cached, shared by every arm and seed),
finetunes each arm x seed, writes the figures as data (`evidence.json` beside the results file)
and renders them between `<!-- evidence:begin -->` and `<!-- evidence:end -->`.
"""

from __future__ import annotations

import json
import shlex
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger
from pydantic import BaseModel

from flip_core.config import FlipConfig, Variant, load_config
from flip_core.flip_stages import PREDICTIONS_DIR
from flip_core.models.flip import read_config
from flows.evidence import (
    build_evidence,
    device_description,
    git_commit,
    placeholder_note,
    render_evidence,
    write_between,
)
from flows.params import flow_config
from tasks.caching import work_dir
from tasks.features import FeaturesManifest, build_features, render_prompts
from tasks.finetune import finetune
from tasks.ingest import ingest_raw, validate_lake
from tasks.pretrain import PRETRAIN_SECTIONS, pretrain
from tasks.quiet import quiet_progress_bars
from tasks.raw_data import prepare_raw_data
from tasks.train import train_id_model

BEGIN = "<!-- benchmark:begin -->"
END = "<!-- benchmark:end -->"
METRICS = ("valid_auc", "test_auc", "test_logloss", "test_cold_auc", "samples_per_s")
REPO_ROOT = Path(__file__).resolve().parent.parent


class Arm(BaseModel):
    """One arm of the FLIP experiment: a finetuning variant, its initialisation, its rows."""

    variant: Variant
    pretraining: str | None  # "flip", "control" (shuffled text) or None (no pretraining)
    plm_side: bool  # trained on the PLM-side rows (config.benchmark.plm_side overrides)


ARMS: dict[str, Arm] = {
    "flip_id": Arm(variant="flip_id", pretraining="flip", plm_side=False),
    "control": Arm(variant="flip_id", pretraining="control", plm_side=False),
    "scratch": Arm(variant="flip_id", pretraining=None, plm_side=False),
    "flip": Arm(variant="flip", pretraining="flip", plm_side=True),
    "flip_plm": Arm(variant="flip_plm", pretraining="flip", plm_side=True),
    "plm_only": Arm(variant="flip_plm", pretraining=None, plm_side=True),
    "id_only": Arm(variant="flip_id", pretraining=None, plm_side=True),
}


class RunResult(BaseModel):
    """Metrics of one trained model (one name, one seed)."""

    model: str
    seed: int
    metrics: dict[str, float]


def aggregate(
    results: Sequence[RunResult], metrics: Sequence[str] = METRICS
) -> list[dict[str, Any]]:
    """One row per model: run count and mean/std of each metric over seeds (order of first run)."""
    rows: list[dict[str, Any]] = []
    for model in dict.fromkeys(r.model for r in results):
        runs = [r for r in results if r.model == model]
        row: dict[str, Any] = {"model": model, "seeds": len(runs)}
        for name in metrics:
            values = [r.metrics[name] for r in runs if name in r.metrics]
            row[name] = (
                statistics.fmean(values) if values else None,
                statistics.stdev(values) if len(values) > 1 else 0.0,
            )
        rows.append(row)
    return rows


def results_markdown(
    rows: Sequence[dict[str, Any]], protocol: str, command: str, metrics: Sequence[str] = METRICS
) -> str:
    """The table (mean ± std over seeds) with the protocol and the command that produced it."""
    lines = [
        f"Protocol `{protocol}`; mean ± std over seeds. Produced by:",
        "",
        "```bash",
        command,
        "```",
        "",
        *placeholder_note(command),
        "| model | seeds | " + " | ".join(metrics) + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for row in rows:
        cells = []
        for name in metrics:
            mean, std = row[name]
            cells.append(_cell(mean, std))
        lines.append(f"| {row['model']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(mean: float | None, std: float) -> str:
    if mean is None:
        return "-"
    if abs(mean) >= 100:  # throughputs
        return f"{mean:,.0f} ± {std:,.0f}"
    return f"{mean:.4f} ± {std:.4f}"


def write_results(path: Path, table: str) -> None:
    """Replace the ID-model table between the benchmark markers in `path` (append a section if
    absent)."""
    write_between(path, table, BEGIN, END, title="Benchmark")


@flow(name="benchmark", timeout_seconds=48 * 3600)
def benchmark(
    config_file: Path | None = None,
    data_root: Path | None = None,
    raw_dir: Path | None = None,
    protocol: str | None = None,
    dataset: Path | None = None,
    models: list[str] | None = None,
    seeds: list[int] | None = None,
    results_path: Path = Path("docs/results.md"),
    overrides: list[str] | None = None,
    variants: list[str] | None = None,
    evidence_path: Path | None = None,
) -> list[dict[str, Any]]:
    """Train `models` x `seeds` on `protocol`, then rewrite the table in `results_path`.

    Args:
        config_file: experiment YAML; its id_model/training sections are the shared settings.
        data_root: where the lake, features and models live (`paths.data_root`).
        raw_dir: folder of raw files the dataset spec reads; required unless synth.enabled (no
            synthetic fallback).
        protocol: a protocol of the dataset spec (`features.protocol`), e.g. ml1m-time-811.
        dataset: dataset spec YAML (`paths.dataset`), e.g. configs/datasets/ml-1m.yaml.
        models: ID backbones to train from scratch (default: the configured one; [] for none).
        seeds: training seeds (default: 0, 1, 2).
        results_path: the Markdown file whose benchmark (and evidence) tables are rewritten.
        overrides: further `section.key=value` overrides.
        variants: FLIP arms x `seeds` (names in `ARMS`: flip_id, control, scratch, flip,
            flip_plm, plm_only, id_only), after one cached pretraining per kind (none by
            default); they also write `evidence_path` and its tables.
        evidence_path: the evidence JSON (default: `evidence.json` beside `results_path`).
    """
    started = time.perf_counter()
    logger = get_run_logger()
    quiet_progress_bars()
    config = flow_config(
        config_file,
        overrides,
        **{
            "paths.data_root": data_root,
            "paths.raw_dir": raw_dir,
            "paths.dataset": dataset,
            "features.protocol": protocol,
        },
    )
    models = models if models is not None else [config.id_model.backbone]
    seeds = seeds if seeds is not None else [0, 1, 2]
    unknown = sorted(set(variants or []) - set(ARMS))
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; known: {', '.join(ARMS)}")
    raw = prepare_raw_data(config)
    lake = ingest_raw(config, raw)
    validate_lake(config, lake)
    features = build_features(config, lake.lake_dir)
    logger.info("Benchmark of %s x seeds %s on %s", models, seeds, features.protocol)
    results = []
    for model in models:
        for seed in seeds:
            trained = train_id_model(config, features.splits_dir / "splits", model, seed)
            metrics = json.loads(trained.metrics_path.read_text(encoding="utf-8"))
            values = {**metrics["valid"], **metrics["test"], "samples_per_s": trained.samples_per_s}
            results.append(RunResult(model=model, seed=seed, metrics=values))
    command = benchmark_command(
        config_file,
        config.paths.raw_dir,  # from --raw-dir, the YAML or --set alike
        features.protocol,
        models,
        seeds,
        overrides,
        variants,
        dataset=config.paths.dataset,
    )
    arm_runs: ArmRuns | None = None
    if variants:
        arm_runs = flip_variants(config, features, variants, seeds)
        results += arm_runs.results
    rows = aggregate(results)
    table = results_markdown(rows, features.protocol, command)
    if models or not variants:  # FLIP arms alone leave the ID-model table as it is
        write_results(results_path, table)
        logger.info("Wrote the benchmark table to %s", results_path)
    create_markdown_artifact(table, key="benchmark-results")
    if arm_runs is not None:
        path = evidence_path or results_path.with_name("evidence.json")
        dcnv2 = [r.metrics["test_auc"] for r in results if r.model == "dcnv2"]
        if not dcnv2 and config.id_model.backbone == "dcnv2" and "scratch" in arm_runs.metrics:
            dcnv2 = [m["test_auc"] for m in arm_runs.metrics["scratch"].values()]
        meta = {
            "protocol": features.protocol,
            "command": command,
            "commit": git_commit(REPO_ROOT),
            "generated_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "wall_seconds": time.perf_counter() - started,
            "device": device_description(),
            "seeds": list(seeds),
            "plm_side_seeds": list(config.benchmark.plm_side_seeds or seeds),
            "plm": config.plm.name,
            "evidence_file": str(path),
            **arm_runs.meta,
        }
        evidence = build_evidence(config, arm_runs.predictions, arm_runs.metrics, dcnv2, meta)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(evidence, indent=2, default=float) + "\n", encoding="utf-8")
        block = render_evidence(evidence)
        write_between(results_path, block)
        create_markdown_artifact(block, key="flip-evidence")
        logger.info("Wrote %s and its tables in %s", path, results_path)
    return rows


class ArmRuns(BaseModel):
    """What the FLIP arms produced: table rows, per-(arm, seed) predictions and metrics."""

    results: list[RunResult]
    predictions: dict[str, dict[int, Path]]
    metrics: dict[str, dict[int, dict[str, float]]]
    meta: dict[str, Any]


def _with(config: FlipConfig, overrides: Sequence[str]) -> FlipConfig:
    """`config` with `section.key=value` overrides applied (validated like the CLI's)."""
    if not overrides:
        return config
    return load_config(None, [*_as_overrides(config), *overrides])


def _as_overrides(config: FlipConfig) -> list[str]:
    data = config.model_dump(mode="json")
    return [f"{section}={json.dumps(values)}" for section, values in data.items()]


def flip_variants(
    config: FlipConfig,
    features: FeaturesManifest,
    variants: Sequence[str],
    seeds: Sequence[int],
) -> ArmRuns:
    """One pretraining per kind the arms need (FLIP; the shuffled-text control), cached and
    shared by every arm and seed, then each arm x seed (PLM-side arms on their own rows)."""
    prompts = render_prompts(config, features)
    kinds = sorted({k for v in variants if (k := ARMS[v].pretraining) is not None})
    pretrained: dict[str, Any] = {}
    for kind in kinds:
        pre_cfg = _with(config, config.benchmark.pretrain)
        if kind == "control":
            pre_cfg = pre_cfg.model_copy(
                update={"pretrain": pre_cfg.pretrain.model_copy(update={"shuffle_text": True})}
            )
        pre_dir = work_dir(pre_cfg, "pretrain", prompts, sections=PRETRAIN_SECTIONS)
        pretrained[kind] = pretrain(pre_cfg, prompts.features_dir, pre_dir)
    plm_cfg = _with(config, config.benchmark.plm_side)
    out = ArmRuns(results=[], predictions={}, metrics={}, meta={})
    for arm_name in variants:
        arm = ARMS[arm_name]
        base = plm_cfg if arm.plm_side else config
        arm_seeds = (config.benchmark.plm_side_seeds or seeds) if arm.plm_side else seeds
        source = pretrained[arm.pretraining] if arm.pretraining is not None else None
        for seed in arm_seeds:
            seeded = base.model_copy(
                update={"training": base.training.model_copy(update={"seed": seed})}
            )
            run_dir = work_dir(
                seeded,
                "finetune",
                prompts,
                source,
                arm.variant,
                sections=(*PRETRAIN_SECTIONS, "finetune"),
            )
            tuned = finetune(
                seeded,
                prompts.features_dir,
                run_dir,
                arm.variant,
                source.model_dir if source is not None else None,
            )
            results_name = (
                f"FLIP {arm_name} ({config.id_model.backbone}, {config.plm.name})"
                if arm_name in ("flip", "flip_id", "flip_plm")
                else f"{arm_name} ({config.id_model.backbone}, {config.plm.name})"
            )
            out.results.append(RunResult(model=results_name, seed=seed, metrics=tuned.metrics))
            out.predictions.setdefault(arm_name, {})[seed] = (
                tuned.model_dir.parent / PREDICTIONS_DIR / "test.parquet"
            )
            out.metrics.setdefault(arm_name, {})[seed] = tuned.metrics
    train_rows = pq.read_metadata(prompts.features_dir / "train.parquet").num_rows
    cap = _with(config, config.benchmark.pretrain).pretrain.max_rows
    layers = None
    if "flip" in pretrained or "control" in pretrained:
        saved = read_config(next(iter(pretrained.values())).model_dir)
        layers = (saved.plm_config or {}).get("num_hidden_layers")
    out.meta = {
        "pretrain_rows": min(cap, train_rows) if cap else train_rows,
        "plm_layers": layers,
        "id_side_train_rows": min(config.finetune.max_rows or train_rows, train_rows),
        "plm_side_train_rows": min(plm_cfg.finetune.max_rows or train_rows, train_rows),
        "settings": {
            "config": config.model_dump(mode="json", exclude={"paths", "mlflow", "gate"}),
        },
    }
    return out


# `--set` keys left out of the recorded command: where this machine keeps things (not what was
# measured), e.g. a local MLflow store; and the paths the command records as options instead
MACHINE_KEYS = ("mlflow.", "paths.data_root", "paths.raw_dir", "paths.dataset")


def portable_path(path: Path | str, placeholder: str) -> str:
    """`path` as a reader can use it: relative to the repository when inside it, else
    `PLACEHOLDER/<name>` (raw data lives outside the repository, on each machine)."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return p.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return f"{placeholder}/{p.name}"


def benchmark_command(
    config_file: Path | None,
    raw_dir: Path | None,
    protocol: str,
    models: Sequence[str],
    seeds: Sequence[int],
    overrides: Sequence[str] | None,
    variants: Sequence[str] | None = None,
    dataset: Path | None = None,
) -> str:
    """The `flip benchmark` command line that reproduces a run (shell-quoted), without this
    machine's paths: the raw folder is `DATA/<name>` (whatever the reader's copy is), the dataset
    spec and config are repository paths, and `--set` of `MACHINE_KEYS` is left out (the raw
    folder and the spec are recorded as `--raw-dir` / `--dataset`)."""
    q = shlex.quote
    parts = ["flip benchmark"]
    if config_file is not None:
        parts.append(f"--config {q(portable_path(config_file, 'CONFIG'))}")
    if dataset is not None:
        parts.append(f"--dataset {q(portable_path(dataset, 'DATA'))}")
    if raw_dir is not None:
        parts.append(f"--raw-dir {q(portable_path(raw_dir, 'DATA'))}")
    parts += [f"--protocol {q(protocol)}", f"--models {q(','.join(models))}"]
    parts.append(f"--seeds {','.join(str(s) for s in seeds)}")
    if variants:
        parts.append(f"--variants {q(','.join(variants))}")
    kept = [o for o in overrides or [] if not o.split("=", 1)[0].strip().startswith(MACHINE_KEYS)]
    parts += [f"--set {q(o)}" for o in kept]
    return " ".join(parts)
