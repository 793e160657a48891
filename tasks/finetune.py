"""Task `finetune`: one FLIP finetuning variant on a built feature folder (thin wrapper)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from flip_core.config import FlipConfig, Variant
from flip_core.flip_stages import PREDICTIONS_DIR, run_finetuning
from flip_core.hashing import tree_sha256
from tasks.caching import content_cache
from tasks.faults import fault_callbacks, inject_faults
from tasks.launch import TorchrunLaunch, TrainedModel, train_stage
from tasks.pretrain import PRETRAIN_SECTIONS
from tasks.tracking import log_predictions, tracked_stage


class FinetuneManifest(TrainedModel):
    """A finetuned CTR model (valid/test metrics) of one variant."""

    variant: str


@task(
    name="finetune",
    timeout_seconds=12 * 3600,
    **content_cache(
        *PRETRAIN_SECTIONS,
        "finetune",
        exclude=("output_dir", "launch"),
    ),
)
def finetune(
    config: FlipConfig,
    features_dir: Path,
    output_dir: Path,
    variant: Variant,
    pretrained_dir: Path | None = None,
    launch: TorchrunLaunch | None = None,
) -> FinetuneManifest:
    """Finetune `variant` from `pretrained_dir` (None: from-scratch baseline).

    `launch`: in-process (default) or under torchrun (see `tasks.launch`); either resumes from
    the latest checkpoint in `output_dir`.

    Logged as the MLflow run `finetune-<variant>`: loss/AUC histories, for `flip` the fusion
    weight a over time, and the selected model's valid/test metrics (overall, warm and cold
    users) with ROC and calibration plots, read from its per-row predictions.
    """
    inject_faults("finetune")
    logger = get_run_logger()
    manifest = {
        "features_dir": str(features_dir),
        "output_dir": str(output_dir),
        "variant": variant,
        "pretrained_dir": str(pretrained_dir) if pretrained_dir is not None else None,
    }
    stage = f"finetune-{variant}"
    with tracked_stage(config, stage, manifest, resume_key=str(output_dir)) as (run, callback):
        run.set_tags({"variant": variant, "seed": config.training.seed})
        pretrained_args = ["--pretrained", str(pretrained_dir)] if pretrained_dir else []
        result = train_stage(
            "finetune",
            config,
            output_dir,
            lambda callbacks, resume: run_finetuning(
                config,
                features_dir,
                output_dir,
                variant,
                pretrained_dir,
                callbacks=[*callbacks, *fault_callbacks("finetune")],
                resume=resume,
            ),
            ["finetune", "--features", str(features_dir), "--variant", variant, *pretrained_args],
            [callback],
            launch,
            logger.info,
        )
        run.set_tags({"flip.world_size": result.world_size})
        log_predictions(run, output_dir / PREDICTIONS_DIR)
    logger.info(
        "%s: finetuned %d steps on %d process(es): %s",
        variant,
        result.global_step,
        result.world_size,
        result.metrics,
    )
    return FinetuneManifest(
        variant=variant,
        model_dir=result.model_dir,
        content_hash=tree_sha256(result.model_dir),
        metrics=result.metrics,
        global_step=result.global_step,
        world_size=result.world_size,
    )
