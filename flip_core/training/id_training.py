"""Train one ID-based CTR backbone on a built feature folder and report valid/test metrics.

Used by `flip train` and the Prefect task `train_id_model`. The model is selected on valid
(`training.monitor`); test is evaluated once, on the selected model, and only reported. Test
metrics are also split into warm rows (user seen in train) and cold rows (user id is OOV).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from flip_core.config import FlipConfig
from flip_core.data.collate import FlipCollate
from flip_core.data.dataset import FeatureDataset
from flip_core.data.feature_map import FEATURE_MAP_FILE, OOV_ID, FeatureMap
from flip_core.models.id import IDModel, build_id_model
from flip_core.training import distributed as ddp
from flip_core.training.callbacks import TrainerCallback
from flip_core.training.checkpoint import seed_everything
from flip_core.training.trainer import Trainer

SPLIT_FILES = ("train.parquet", "valid.parquet", "test.parquet")


@dataclass
class IDTrainReport:
    """What one training run produced (also written to `<output_dir>/metrics.json`)."""

    backbone: str
    seed: int
    model_dir: str
    features_dir: str
    valid: dict[str, float]
    test: dict[str, float]
    best_step: int | None
    global_step: int
    samples_per_s: float
    wall_seconds: float
    parameters: int
    config: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """JSON text of the report."""
        return json.dumps(asdict(self), indent=2)


def locate_features(features_dir: Path | str) -> tuple[Path, Path]:
    """(folder with train/valid/test.parquet, feature_map.json) for a prompt feature folder, a
    split build folder or its `splits/` folder."""
    root = Path(features_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"features folder {root} does not exist")
    if not (root / "train.parquet").is_file() and (root / "splits" / "train.parquet").is_file():
        root = root / "splits"  # a split build folder: <key>/{feature_map.json, splits/}
    missing = [name for name in SPLIT_FILES if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"features folder {root} lacks {', '.join(missing)}")
    for candidate in (root / FEATURE_MAP_FILE, root.parent / FEATURE_MAP_FILE):
        if candidate.is_file():
            return root, candidate
    raise FileNotFoundError(f"no feature_map.json in {root} or its parent")


def train_id_model(
    features_dir: Path | str,
    output_dir: Path | str,
    config: FlipConfig,
    backbone: str | None = None,
    seed: int | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    max_rows: int | None = None,
    resume: bool = False,
) -> IDTrainReport:
    """Train `backbone` (default `config.id_model.backbone`) with `seed` (default
    `config.training.seed`); the selected model is saved to `<output_dir>/model`."""
    start = time.perf_counter()
    data_dir, feature_map_path = locate_features(features_dir)
    feature_map = FeatureMap.load(feature_map_path)
    train_cfg = config.training.model_copy(
        update={"seed": config.training.seed if seed is None else seed}
    )
    model_cfg = config.id_model.model_copy(
        update={"backbone": backbone or config.id_model.backbone}
    )
    if train_cfg.num_threads is not None:
        torch.set_num_threads(train_cfg.num_threads)
    splits = {
        name: FeatureDataset(data_dir / f"{name}.parquet", with_text=False, max_rows=max_rows)
        for name in ("train", "valid", "test")
    }
    seed_everything(train_cfg.seed)
    model = build_id_model(model_cfg.backbone, feature_map.vocab_sizes, model_cfg)
    out = Path(output_dir)
    trainer = Trainer(
        model,
        train_cfg,
        splits["train"],
        splits["valid"],
        output_dir=out / "run",
        collate_fn=FlipCollate(with_text=False),
        callbacks=callbacks,
        save_best=lambda m, d: _save(m, d, feature_map_path),
    )
    result = trainer.train(resume_from="latest" if resume else None)
    valid = trainer.evaluate(splits["valid"], "valid")
    test = _test_metrics(trainer, splits["test"], feature_map)
    model_dir = out / "model"
    report = IDTrainReport(
        backbone=model_cfg.backbone,
        seed=train_cfg.seed,
        model_dir=str(model_dir),
        features_dir=str(data_dir),
        valid=valid,
        test=test,
        best_step=result.best_step,
        global_step=result.global_step,
        samples_per_s=result.samples_per_s,
        wall_seconds=time.perf_counter() - start,
        parameters=sum(p.numel() for p in model.parameters()),
        config={"id_model": model_cfg.model_dump(mode="json"), "training": train_cfg.model_dump()},
    )
    if ddp.is_main_process():
        _save(model, model_dir, feature_map_path)
        (out / "metrics.json").write_text(report.to_json(), encoding="utf-8")
    return report


def _save(model: torch.nn.Module, directory: Path, feature_map: Path) -> None:
    assert isinstance(model, IDModel)
    model.save_pretrained(directory, feature_map=feature_map)


def _test_metrics(
    trainer: Trainer, test: FeatureDataset, feature_map: FeatureMap
) -> dict[str, float]:
    """Test metrics, also on warm/cold users (`test_warm_*`, `test_cold_*`) and items
    (`test_item_warm_*`, `test_item_cold_*`): cold = the field's id is OOV (unseen in train)."""
    metrics = trainer.evaluate(test, "test")
    for role, prefix in (("user", "test_"), ("item", "test_item_")):
        field = feature_map.role_field(role)
        if field is None:
            continue
        ids = test.field_ids[:, feature_map.field_names.index(field)]
        for name, rows in (("warm", ids != OOV_ID), ("cold", ids == OOV_ID)):
            indices = rows.nonzero()[0].tolist()
            metrics[f"{prefix}{name}_rows"] = float(len(indices))
            if indices:
                part = trainer.evaluate(Subset(test, indices), f"{prefix}{name}")
                metrics.update({k: v for k, v in part.items() if not k.endswith("_loss")})
    return metrics
