"""Task: train one ID-based CTR backbone on a built feature folder (`train_id_model`).

A thin wrapper around `flip_core.training.id_training`: cached on the features' content hash,
the `id_model` and `training` config sections and the code; the working folder is deterministic,
so a rerun after a crash resumes from the latest checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from flip_core.config import FlipConfig
from flip_core.hashing import tree_sha256
from flip_core.training.id_training import train_id_model as _train
from tasks.caching import content_cache, work_dir

_CODE = ("flip_core/models", "flip_core/training", "flip_core/metrics.py", "tasks/train.py")


class IDModelManifest(BaseModel):
    """A trained ID model directory and its headline metrics."""

    model_dir: Path
    metrics_path: Path
    backbone: str
    seed: int
    valid_auc: float
    test_auc: float
    test_logloss: float
    samples_per_s: float
    content_hash: str


@task(name="train-id-model", **content_cache("id_model", "training", code=_CODE))
def train_id_model(
    config: FlipConfig, features_dir: Path, backbone: str | None = None, seed: int | None = None
) -> IDModelManifest:
    """Train, select on valid, report test; resumes from checkpoints of an interrupted run."""
    logger = get_run_logger()
    out = work_dir(
        config,
        "train-id-model",
        features_dir,
        backbone,
        seed,
        sections=("id_model", "training"),
    )
    report = _train(features_dir, out, config, backbone=backbone, seed=seed, resume=True)
    logger.info(
        "%s seed %d: valid AUC %.4f, test AUC %.4f, logloss %.4f, %.0f samples/s",
        report.backbone,
        report.seed,
        report.valid["valid_auc"],
        report.test["test_auc"],
        report.test["test_logloss"],
        report.samples_per_s,
    )
    model_dir = Path(report.model_dir)
    return IDModelManifest(
        model_dir=model_dir,
        metrics_path=out / "metrics.json",
        backbone=report.backbone,
        seed=report.seed,
        valid_auc=report.valid["valid_auc"],
        test_auc=report.test["test_auc"],
        test_logloss=report.test["test_logloss"],
        samples_per_s=report.samples_per_s,
        content_hash=tree_sha256(model_dir),
    )
