"""`flip pretrain` and `flip finetune`: FLIP pretraining and the three finetuning variants."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from flip_core.config import VARIANTS
from flip_core.data.loaders import check_feature_folder
from flip_core.models.saving import CONFIG_FILE
from flows.cli.console import fail, resolve_config
from flows.cli.options import ConfigOpt, SetOpt

if TYPE_CHECKING:
    from flip_core.flip_stages import StageResult
    from flip_core.training import TrainerCallback

console = Console(width=200)

FeaturesOpt = Annotated[
    Path, typer.Option("--features", "-f", help="Built feature folder (from `flip features`).")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (model/ goes inside).")]
ResumeOpt = Annotated[str | None, typer.Option(help="Resume: a checkpoint folder or 'latest'.")]


def pretrain_command(
    features: FeaturesOpt,
    out: OutOpt,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    resume: ResumeOpt = None,
) -> None:
    """FLIP pretraining (MLM + MTM + ICL, each switchable with --set pretrain.<obj>=false)."""
    cfg = resolve_config(config, set_)
    try:
        check_feature_folder(features)
    except FileNotFoundError as exc:
        raise fail(str(exc), code=2) from None
    from flip_core.flip_stages import run_pretraining

    _run_stage(lambda callbacks: run_pretraining(cfg, features, out, callbacks, resume=resume))


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
) -> None:
    """Finetune a variant for CTR from a pretraining output (or from scratch)."""
    if variant not in VARIANTS:
        raise fail(f"unknown variant '{variant}'; choose one of {', '.join(VARIANTS)}", code=2)
    cfg = resolve_config(config, set_)
    try:
        check_feature_folder(features)
    except FileNotFoundError as exc:
        raise fail(str(exc), code=2) from None
    if pretrained is not None and not (pretrained / CONFIG_FILE).is_file():
        raise fail(
            f"{pretrained} is not a saved FLIP pretraining folder (no {CONFIG_FILE})", code=2
        )
    from flip_core.flip_stages import run_finetuning

    _run_stage(
        lambda callbacks: run_finetuning(
            cfg, features, out, variant, pretrained, callbacks, resume=resume
        )
    )


def _run_stage(stage: Callable[[list[TrainerCallback]], StageResult]) -> None:
    """Run a training stage (also under a hand-started torchrun); a bad input exits 2 with its
    first line; rank 0 reports the model, steps and metrics."""
    from flip_core.training import distributed as ddp
    from flip_core.training.events import StartStep

    start = StartStep(lambda text: console.print(text, markup=False, highlight=False))
    try:
        result = stage([start])
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc).splitlines()[0], code=2) from None
    if ddp.is_main_process():
        console.print(f"steps: {result.train.global_step}")
        for key, value in sorted(result.metrics.items()):
            console.print(f"{key}: {value:.4f}")
        console.print(f"model: {result.model_dir}", markup=False)
    if ddp.world_size() > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
