"""Task `pretrain`: FLIP pretraining on a built feature folder (thin wrapper)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from flip_core.config import FlipConfig
from flip_core.flip_stages import run_pretraining
from flip_core.hashing import tree_sha256
from tasks.caching import content_cache
from tasks.launch import TorchrunLaunch, TrainedModel, train_stage
from tasks.tracking import tracked_stage


class PretrainManifest(TrainedModel):
    """A FLIP pretraining output (its metrics: the final valid ones)."""


PRETRAIN_SECTIONS = ("features", "plm", "id_model", "training", "pretrain")
"""The config sections a pretraining depends on (its cache key and work folder)."""


@task(
    name="pretrain",
    timeout_seconds=12 * 3600,
    **content_cache(*PRETRAIN_SECTIONS, exclude=("output_dir", "launch")),
)
def pretrain(
    config: FlipConfig,
    features_dir: Path,
    output_dir: Path,
    launch: TorchrunLaunch | None = None,
) -> PretrainManifest:
    """Pretrain ID model + PLM (MLM/MTM/ICL as configured); resume from the latest checkpoint.

    `launch`: in-process (default) or under torchrun (see `tasks.launch`). Logged as the MLflow
    run `pretrain`: per-objective loss/accuracy histories and curves.
    """
    logger = get_run_logger()
    manifest = {"features_dir": str(features_dir), "output_dir": str(output_dir)}
    stage_run = tracked_stage(config, "pretrain", manifest, resume_key=str(output_dir))
    with stage_run as (run, callback):
        result = train_stage(
            "pretrain",
            config,
            output_dir,
            lambda callbacks, resume: run_pretraining(
                config, features_dir, output_dir, callbacks=callbacks, resume=resume
            ),
            ["pretrain", "--features", str(features_dir)],
            [callback],
            launch,
            logger.info,
        )
        run.set_tags({"flip.world_size": result.world_size})
    logger.info(
        "pretrained %d steps on %d process(es) -> %s",
        result.global_step,
        result.world_size,
        result.model_dir,
    )
    return PretrainManifest(
        model_dir=result.model_dir,
        content_hash=tree_sha256(result.model_dir),
        metrics=result.metrics,
        global_step=result.global_step,
        world_size=result.world_size,
    )
