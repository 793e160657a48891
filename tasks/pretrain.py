"""Task `pretrain`: FLIP pretraining on a built feature folder (thin wrapper)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from flip_core.config import FlipConfig
from flip_core.flip_stages import run_pretraining
from flip_core.hashing import tree_sha256
from tasks.caching import content_cache
from tasks.tracking import tracked_stage


class PretrainManifest(BaseModel):
    """A FLIP pretraining output: its model folder, content hash and final valid metrics."""

    model_dir: Path
    content_hash: str
    metrics: dict[str, float]


@task(
    name="pretrain",
    timeout_seconds=12 * 3600,
    **content_cache("features", "plm", "id_model", "training", "pretrain", exclude=("output_dir",)),
)
def pretrain(config: FlipConfig, features_dir: Path, output_dir: Path) -> PretrainManifest:
    """Pretrain ID model + PLM (MLM/MTM/ICL as configured); resume from the latest checkpoint.

    Logged as the MLflow run `pretrain`: per-objective loss/accuracy histories and curves.
    """
    resume = "latest" if (output_dir / "checkpoints").is_dir() else None
    manifest = {"features_dir": str(features_dir), "output_dir": str(output_dir)}
    with tracked_stage(config, "pretrain", manifest) as (_, callback):
        result = run_pretraining(
            config, features_dir, output_dir, callbacks=[callback], resume=resume
        )
    get_run_logger().info("pretrained %d steps -> %s", result.train.global_step, result.model_dir)
    return PretrainManifest(
        model_dir=result.model_dir,
        content_hash=tree_sha256(result.model_dir),
        metrics=result.metrics,
    )
