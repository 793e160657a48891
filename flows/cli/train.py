"""`flip train`: train one ID-based CTR backbone on a built feature folder.

Runs under `torchrun --nproc_per_node N -m flows.cli train ...` for DDP as well.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flows.cli.console import fail, resolve_config
from flows.cli.options import ConfigOpt, SetOpt

console = Console()


def train_command(
    features: Annotated[
        Path,
        typer.Option(
            "--features", "-f", help="Feature folder with train/valid/test.parquet (+ feature_map)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (model, checkpoints).")],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Backbone, e.g. dcnv2, deepfm, autoint.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default training.seed).")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    resume: Annotated[
        bool, typer.Option(help="Resume from the latest checkpoint in --out.")
    ] = False,
    max_rows: Annotated[
        int | None, typer.Option(min=1, help="Cap each split at a seeded random sample of N rows.")
    ] = None,
) -> None:
    """Train an ID-based CTR model, select it on valid, report test AUC/logloss."""
    from flip_core.models.id import known_id_models
    from flip_core.training import distributed as ddp
    from flip_core.training.id_training import train_id_model

    cfg = resolve_config(config, set_)
    backbone = (model or cfg.id_model.backbone).lower()
    if backbone not in known_id_models():
        raise fail(f"unknown model '{backbone}'; known: {', '.join(known_id_models())}", code=2)
    try:
        report = train_id_model(
            features, out, cfg, backbone=backbone, seed=seed, max_rows=max_rows, resume=resume
        )
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc).splitlines()[0]) from None
    if ddp.is_main_process():
        t = report.test
        console.print(
            f"{report.backbone} seed {report.seed}: valid AUC {report.valid['valid_auc']:.4f} | "
            f"test AUC {t['test_auc']:.4f} logloss {t['test_logloss']:.4f} | "
            f"{report.samples_per_s:,.0f} samples/s | model: {report.model_dir}",
            markup=False,
            highlight=False,
        )
