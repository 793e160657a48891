"""`flip pretrain` and `flip finetune`: FLIP pretraining and the three finetuning variants."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from flip_core.config import VARIANTS
from flip_core.data.feature_map import FEATURE_MAP_FILE
from flip_core.models.saving import CONFIG_FILE
from flows.console import fail, resolve_config

if TYPE_CHECKING:
    from flip_core.flip_stages import StageResult
    from flip_core.training import TrainerCallback
    from flip_core.training.events import StartStep

console = Console(width=200)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Experiment YAML.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one key, e.g. --set pretrain.icl=false."),
]
FeaturesOpt = Annotated[
    Path, typer.Option("--features", "-f", help="Built feature folder (from `flip features`).")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (model/ goes inside).")]
ResumeOpt = Annotated[str | None, typer.Option(help="Resume: a checkpoint folder or 'latest'.")]
SummaryOpt = Annotated[
    Path | None,
    typer.Option(help="Write a JSON summary (model, metrics, steps, world size) here (rank 0)."),
]
EventsOpt = Annotated[
    Path | None,
    typer.Option(help="Record the trainer's callback events as JSON lines here (rank 0)."),
]


def _check_features(features: Path) -> None:
    for name in ("train.parquet", FEATURE_MAP_FILE, "manifest.json"):
        if not (features / name).is_file():
            raise fail(
                f"{features} is not a built feature folder (no {name}); run `flip features`", code=2
            )


def pretrain_command(
    features: FeaturesOpt,
    out: OutOpt,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    resume: ResumeOpt = None,
    summary: SummaryOpt = None,
    events: EventsOpt = None,
) -> None:
    """FLIP pretraining (MLM + MTM + ICL, each switchable with --set pretrain.<obj>=false)."""
    cfg = resolve_config(config, set_)
    _check_features(features)
    from flip_core.flip_stages import run_pretraining

    _run_stage(
        lambda callbacks: run_pretraining(cfg, features, out, callbacks, resume=resume),
        events,
        summary,
    )


def finetune_command(
    features: FeaturesOpt,
    out: OutOpt,
    variant: Annotated[str, typer.Option(help="flip | flip_id | flip_plm.")] = "flip_id",
    pretrained: Annotated[
        Path | None,
        typer.Option(help="Pretraining output's model folder; omit for a from-scratch baseline."),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    resume: ResumeOpt = None,
    summary: SummaryOpt = None,
    events: EventsOpt = None,
) -> None:
    """Finetune a variant for CTR from a pretraining output (or from scratch)."""
    if variant not in VARIANTS:
        raise fail(f"unknown variant '{variant}'; choose one of {', '.join(VARIANTS)}", code=2)
    cfg = resolve_config(config, set_)
    _check_features(features)
    if pretrained is not None and not (pretrained / CONFIG_FILE).is_file():
        raise fail(
            f"{pretrained} is not a saved FLIP pretraining folder (no {CONFIG_FILE})", code=2
        )
    from flip_core.flip_stages import run_finetuning

    _run_stage(
        lambda callbacks: run_finetuning(
            cfg, features, out, variant, pretrained, callbacks, resume=resume
        ),
        events,
        summary,
    )


def _run_stage(
    stage: Callable[[list[TrainerCallback]], StageResult],
    events: Path | None,
    summary: Path | None,
) -> None:
    """Run a training stage with the CLI's callbacks; a bad input exits 2 with its first line."""
    from flip_core.training.events import StartStep

    start = StartStep(lambda text: console.print(text, markup=False, highlight=False))
    try:
        result = stage(_callbacks(start, events))
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc).splitlines()[0], code=2) from None
    _finish(result, start, summary)


def _callbacks(start: TrainerCallback, events: Path | None) -> list[TrainerCallback]:
    from flip_core.training.events import EventRecorder

    if events is None:
        return [start]
    if os.environ.get("RANK", "0") == "0":  # before the process group exists
        events.unlink(missing_ok=True)  # this run's events only
    return [start, EventRecorder(events)]


def _finish(result: StageResult, start: StartStep, summary: Path | None) -> None:
    """Report on rank 0 (and write the summary), then leave the process group."""
    from flip_core.training import distributed as ddp

    if ddp.is_main_process():
        _report(result.model_dir, result.metrics, result.train.global_step)
        if summary is not None:
            data = {
                "model_dir": str(result.model_dir),
                "metrics": result.metrics,
                "global_step": result.train.global_step,
                "start_step": start.step,
                "world_size": ddp.world_size(),
            }
            summary.parent.mkdir(parents=True, exist_ok=True)
            summary.write_text(json.dumps(data, indent=2), encoding="utf-8")
    if ddp.world_size() > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def _report(model_dir: Path, metrics: dict[str, float], steps: int) -> None:
    console.print(f"steps: {steps}")
    for key, value in sorted(metrics.items()):
        console.print(f"{key}: {value:.4f}")
    console.print(f"model: {model_dir}", markup=False)
