"""The benchmark behind docs/results.md: models (and FLIP variants) x seeds on one protocol.

One flow run trains every (model, seed) pair on the same features, aggregates test AUC and
logloss as mean ± std over seeds, and rewrites the table between the markers
`<!-- benchmark:begin -->` and `<!-- benchmark:end -->` in the results file (the rest of the
file, prose written by people, is kept). Finished pairs are cache hits on a rerun.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger
from pydantic import BaseModel

from flip_core.config import FlipConfig, Variant
from flows.params import flow_config
from tasks.caching import work_dir
from tasks.features import FeaturesManifest, build_features, render_prompts
from tasks.finetune import finetune
from tasks.ingest import ingest_raw, validate_lake
from tasks.pretrain import pretrain
from tasks.quiet import quiet_progress_bars
from tasks.raw_data import prepare_raw_data
from tasks.train import train_id_model

BEGIN = "<!-- benchmark:begin -->"
END = "<!-- benchmark:end -->"
METRICS = ("valid_auc", "test_auc", "test_logloss", "test_cold_auc", "samples_per_s")
PRETRAIN_SECTIONS = ("features", "plm", "id_model", "training", "pretrain")


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
    """Replace the text between the benchmark markers in `path` (append a section if absent)."""
    block = f"{BEGIN}\n{table}{END}"
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Results\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n## Benchmark\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


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
    variants: list[Variant] | None = None,
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
        results_path: the Markdown file whose benchmark table is rewritten.
        overrides: further `section.key=value` overrides.
        variants: FLIP finetuning variants (flip_id, flip_plm, flip) x `seeds`, after one
            pretraining of the configured backbone and PLM (none by default).
    """
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
    if variants:
        results += flip_variants(config, features, variants, seeds)
    rows = aggregate(results)
    command = benchmark_command(
        config_file, raw_dir, features.protocol, models, seeds, overrides, variants
    )
    table = results_markdown(rows, features.protocol, command)
    write_results(results_path, table)
    create_markdown_artifact(table, key="benchmark-results")
    logger.info("Wrote the benchmark table to %s", results_path)
    return rows


def flip_variants(
    config: FlipConfig,
    features: FeaturesManifest,
    variants: Sequence[Variant],
    seeds: Sequence[int],
) -> list[RunResult]:
    """One FLIP pretraining (cached like the nightly one), then each variant x seed."""
    prompts = render_prompts(config, features)
    pre_dir = work_dir(config, "pretrain", prompts, sections=PRETRAIN_SECTIONS)
    pretrained = pretrain(config, prompts.features_dir, pre_dir)
    results = []
    for variant in variants:
        for seed in seeds:
            seeded = config.model_copy(
                update={"training": config.training.model_copy(update={"seed": seed})}
            )
            out = work_dir(
                seeded,
                "finetune",
                prompts,
                pretrained,
                variant,
                sections=(*PRETRAIN_SECTIONS, "finetune"),
            )
            tuned = finetune(seeded, prompts.features_dir, out, variant, pretrained.model_dir)
            name = f"FLIP {variant} ({config.id_model.backbone}, {config.plm.name})"
            results.append(RunResult(model=name, seed=seed, metrics=tuned.metrics))
    return results


def benchmark_command(
    config_file: Path | None,
    raw_dir: Path | None,
    protocol: str,
    models: Sequence[str],
    seeds: Sequence[int],
    overrides: Sequence[str] | None,
    variants: Sequence[str] | None = None,
) -> str:
    """The `flip benchmark` command line that reproduces a run."""
    parts = ["flip benchmark"]
    if config_file is not None:
        parts.append(f"--config {config_file}")
    if raw_dir is not None:
        parts.append(f"--raw-dir {raw_dir}")
    parts += [f"--protocol {protocol}", f"--models {','.join(models)}"]
    parts.append(f"--seeds {','.join(str(s) for s in seeds)}")
    if variants:
        parts.append(f"--variants {','.join(variants)}")
    parts += [f"--set {o}" for o in overrides or []]
    return " ".join(parts)
