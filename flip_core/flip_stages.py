"""FLIP stages on a built feature folder: `run_pretraining` and `run_finetuning`.

Both use the one `Trainer` (flip_core.training) and write an HF-style model directory
(`<output_dir>/model`: config.json, model.safetensors, feature_map.json, tokenizer files).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn
from torch.utils.data import Dataset

from flip_core.config import FinetuneConfig, FlipConfig, PretrainConfig
from flip_core.data.collate import FlipCollate
from flip_core.data.dataset import FeatureDataset, RowBatch
from flip_core.data.feature_map import OOV_ID
from flip_core.data.loaders import load_feature_map
from flip_core.data.render import read_manifest
from flip_core.metrics import split_metrics
from flip_core.models.flip import (
    VARIANTS,
    FlipForCTR,
    FlipForPretraining,
    FlipModelConfig,
    FlipPreTrainedModel,
    Variant,
    make_masks_disjoint,
)
from flip_core.models.id import build_id_model
from flip_core.models.plm import PLMEncoder, load_tokenizer
from flip_core.training import (
    Trainer,
    TrainerCallback,
    TrainerState,
    TrainResult,
    seed_everything,
)
from flip_core.training import distributed as ddp

MODEL_DIR = "model"
PREDICTIONS_DIR = "predictions"


@dataclass
class StageResult:
    """Where the model went, the trainer's summary and the extra metrics of the stage."""

    model_dir: Path
    train: TrainResult
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    predictions_dir: Path | None = None


class PretrainMetricsCallback(TrainerCallback):
    """Adds the per-objective losses and accuracies of the model's forward passes (a forward
    hook: row-weighted means per mode since the last log) to the trainer's logs, in place, so
    later callbacks such as MLflow see them, and keeps a history."""

    def __init__(self, model: FlipForPretraining, jsonl: Path | None = None) -> None:
        self.jsonl = jsonl
        self.history: list[dict[str, float]] = []
        self._running: dict[str, dict[str, list[float]]] = {"train": {}, "eval": {}}
        model.register_forward_hook(self._record, with_kwargs=True)

    def _record(
        self, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
    ) -> None:
        rows = int((kwargs["field_ids"] if "field_ids" in kwargs else args[0]).shape[0])
        window = self._running["train" if model.training else "eval"]
        for key, value in out.metrics().items():
            total, n = window.get(key, [0.0, 0.0])
            window[key] = [total + value * rows, n + rows]

    def pop(self, mode: Literal["train", "eval"]) -> dict[str, float]:
        """Means since the last call of the forward passes in `mode`, then reset."""
        window, self._running[mode] = self._running[mode], {}
        return {k: total / n for k, (total, n) in window.items() if n}

    def on_step(self, state: TrainerState, logs: dict[str, float]) -> None:
        """Train-mode means since the last log step."""
        if logs:
            logs.update({f"train_{k}": v for k, v in self.pop("train").items()})
            self._add(state, logs)

    def on_eval(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """Eval-mode means over the validation pass."""
        metrics.update({f"valid_{k}": v for k, v in self.pop("eval").items()})
        self._add(state, metrics)

    def _add(self, state: TrainerState, values: dict[str, float]) -> None:
        record = {"step": float(state.step), **values}
        self.history.append(record)
        if self.jsonl is not None and state.is_main:
            self.jsonl.parent.mkdir(parents=True, exist_ok=True)
            with self.jsonl.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


class FusionWeightCallback(TrainerCallback):
    """Adds the FLIP fusion weight a (`train_fusion_a`, the ID branch's share of the final
    logit) to the trainer's step logs, in place, so later callbacks such as MLflow see it, and
    keeps its trajectory (`history`; appended to `jsonl` when given)."""

    def __init__(self, model: FlipForCTR, jsonl: Path | None = None) -> None:
        self.model = model
        self.jsonl = jsonl
        self.history: list[dict[str, float]] = []

    def on_step(self, state: TrainerState, logs: dict[str, float]) -> None:
        """The current a, on the trainer's log steps (`flip` variant only)."""
        weight = self.model.mix_weight
        if logs and weight is not None:
            a = float(weight.detach())
            logs["train_fusion_a"] = a
            record = {"step": float(state.step), "fusion_a": a}
            self.history.append(record)
            if self.jsonl is not None and state.is_main:
                self.jsonl.parent.mkdir(parents=True, exist_ok=True)
                with self.jsonl.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")


class TextFromOtherRows(Dataset[RowBatch]):
    """The control arm's data: each row keeps its IDs and label but takes its text (tokens and
    field spans) from another row, by a seeded derangement (no row keeps its own text). The
    text distribution is unchanged; only the row-text alignment is destroyed."""

    def __init__(self, data: FeatureDataset, seed: int) -> None:
        self.data = data
        n = len(data)
        order = np.random.default_rng(seed).permutation(n)
        self.text_of = np.empty(n, dtype=np.int64)
        self.text_of[order] = np.roll(order, -1) if n > 1 else order

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> RowBatch:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> RowBatch:
        """IDs and labels of `indices`, text of their partner rows."""
        own = self.data.__getitems__(indices)
        other = self.data.__getitems__(self.text_of[np.asarray(indices, dtype=np.int64)].tolist())
        return RowBatch(own.index, own.field_ids, own.labels, other.tokens, other.token_spans)


class _DisjointCollate:
    """FlipCollate whose MTM masks avoid the MLM-masked fields (single-pass pretraining)."""

    def __init__(self, inner: FlipCollate) -> None:
        self.inner = inner

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __call__(self, batch: RowBatch | Sequence[RowBatch]) -> dict[str, torch.Tensor]:
        return make_masks_disjoint(self.inner(batch))


def _datasets(
    features_dir: Path,
    with_text: bool,
    caps: PretrainConfig | FinetuneConfig,
) -> tuple[FeatureDataset, FeatureDataset | None]:
    """Train and valid rows, each capped (`max_rows` / `max_valid_rows`) as `caps.sample` says."""
    valid = features_dir / "valid.parquet"
    train = FeatureDataset(
        features_dir / "train.parquet", with_text, caps.max_rows, caps.sample, caps.sample_seed
    )
    if not valid.is_file():
        return train, None
    return train, FeatureDataset(
        valid, with_text, caps.max_valid_rows, caps.sample, caps.sample_seed
    )


def _collate(
    features_dir: Path, config: FlipConfig, with_text: bool, masks: bool, epoch: int = 0
) -> Callable[[Any], dict[str, torch.Tensor]]:
    tok = read_manifest(features_dir)["tokenizer"]
    p = config.pretrain
    inner = FlipCollate(
        pad_token_id=int(tok["pad_token_id"] or 0),
        mask_token_id=tok["mask_token_id"],
        with_text=with_text,
        mlm=masks and p.mlm,
        mtm=masks and p.mtm,
        mlm_ratio=p.mlm_field_ratio,
        mtm_ratio=p.mtm_field_ratio,
        seed=config.training.seed,
        epoch=epoch,
    )
    if masks and p.single_pass and p.mlm and p.mtm:
        return _DisjointCollate(inner)
    return inner


def _optimizer_factory(
    model: FlipPreTrainedModel, config: FlipConfig
) -> Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]:
    """AdamW with the PLM's weights at `plm.learning_rate`, everything else at training's."""

    def make(_: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        plm_ids = {id(p) for p in model.plm.parameters()} if model.plm is not None else set()
        mix = getattr(model, "mix_logit", None)
        fusion_lr = config.finetune.fusion_learning_rate
        own_lr = {id(mix)} if isinstance(mix, nn.Parameter) and fusion_lr is not None else set()
        params = [p for p in model.parameters() if p.requires_grad]
        plm_params = [p for p in params if id(p) in plm_ids]
        fusion = [p for p in params if id(p) in own_lr]
        other = [p for p in params if id(p) not in plm_ids | own_lr]
        groups: list[dict[str, Any]] = [{"params": other}] if other else []
        if plm_params:
            groups.append({"params": plm_params, "lr": config.plm.learning_rate})
        if fusion:  # a scalar: no weight decay (it would pull a towards 0.5)
            groups.append({"params": fusion, "lr": fusion_lr, "weight_decay": 0.0})
        return torch.optim.AdamW(
            groups,
            lr=config.training.learning_rate,
            weight_decay=config.training.weight_decay,
        )

    return make


def _saver(features_dir: Path, tokenizer: Any) -> Callable[[nn.Module, Path], None]:
    def save(model: nn.Module, directory: Path) -> None:
        assert isinstance(model, FlipPreTrainedModel)
        model.save_pretrained(directory, features_dir / "feature_map.json", tokenizer)

    return save


def _load_plm(config: FlipConfig) -> PLMEncoder:
    """The configured encoder with its pretrained weights, cut to `plm.num_layers` layers."""
    p = config.plm
    return PLMEncoder.from_name(p.name, p.pooling, num_layers=p.num_layers)


def build_pretraining_model(config: FlipConfig, features_dir: Path) -> FlipForPretraining:
    """A fresh FLIP pretraining model over the feature folder's fields, noise from its counts."""
    fmap = load_feature_map(features_dir)
    model_cfg = FlipModelConfig.from_flip_config(config, fmap.field_names, fmap.vocab_sizes)
    plm = _load_plm(config)
    id_model = build_id_model(model_cfg.id_backbone, model_cfg.vocab_sizes, model_cfg.id_model)
    model = FlipForPretraining(model_cfg, id_model=id_model, plm=plm)
    model.set_noise_counts([fmap.counts(f) for f in fmap.field_names])
    return model


def run_pretraining(
    config: FlipConfig,
    features_dir: Path | str,
    output_dir: Path | str,
    callbacks: Sequence[TrainerCallback] = (),
    resume: str | None = None,
) -> StageResult:
    """Pretrain ID model + PLM with the enabled objectives; select on valid loss."""
    features_dir, output_dir = Path(features_dir), Path(output_dir)
    seed_everything(config.training.seed)  # the fresh heads' (and ID model's) initial weights
    model = build_pretraining_model(config, features_dir)
    tokenizer = load_tokenizer(config.plm.name)
    _check_tokenizer(features_dir, tokenizer)
    p = config.pretrain
    train, valid = _datasets(features_dir, True, p)
    train_rows: Dataset[RowBatch] = train
    valid_rows: Dataset[RowBatch] | None = valid
    if p.shuffle_text:  # the control arm
        train_rows = TextFromOtherRows(train, p.shuffle_text_seed)
        valid_rows = TextFromOtherRows(valid, p.shuffle_text_seed + 1) if valid else None
    tracker = PretrainMetricsCallback(model, output_dir / "metrics.jsonl")
    trainer = Trainer(
        model,
        config.training,
        train_rows,
        valid_rows,
        output_dir=output_dir,
        collate_fn=_collate(features_dir, config, True, True),
        eval_collate_fn=_collate(features_dir, config, True, True),
        callbacks=[tracker, *callbacks],
        optimizer_factory=_optimizer_factory(model, config),
        save_best=_saver(features_dir, tokenizer),
    )
    result = trainer.train(resume_from=resume)
    model_dir = output_dir / MODEL_DIR
    if ddp.is_main_process():  # one writer under DDP
        model.save_pretrained(model_dir, features_dir / "feature_map.json", tokenizer)
        _write_json(output_dir / "history.json", tracker.history)
    return StageResult(model_dir, result, result.valid_metrics, tracker.history)


def build_ctr_model(
    config: FlipConfig, features_dir: Path, variant: Variant, pretrained: Path | None
) -> FlipForCTR:
    """`variant` initialised from a pretraining directory, or from scratch (baselines: the ID
    model untrained, the PLM with its original weights)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
    if pretrained is not None:
        return FlipForCTR.from_pretraining(pretrained, variant)
    fmap = load_feature_map(features_dir)
    model_cfg = FlipModelConfig.from_flip_config(config, fmap.field_names, fmap.vocab_sizes)
    model_cfg = model_cfg.model_copy(update={"variant": variant})
    plm = None if variant == "flip_id" else _load_plm(config)
    id_model = None
    if variant != "flip_plm":
        id_model = build_id_model(model_cfg.id_backbone, model_cfg.vocab_sizes, model_cfg.id_model)
    return FlipForCTR(model_cfg, id_model=id_model, plm=plm)


def run_finetuning(
    config: FlipConfig,
    features_dir: Path | str,
    output_dir: Path | str,
    variant: Variant,
    pretrained: Path | str | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    resume: str | None = None,
) -> StageResult:
    """Finetune one variant for CTR; select on valid AUC; report test AUC/log loss."""
    features_dir, output_dir = Path(features_dir), Path(output_dir)
    seed_everything(config.training.seed)  # initial weights of whatever is not loaded
    model = build_ctr_model(
        config, features_dir, variant, Path(pretrained) if pretrained is not None else None
    )
    with_text = model.plm is not None
    tokenizer = load_tokenizer(config.plm.name) if with_text else None
    if tokenizer is not None:
        _check_tokenizer(features_dir, tokenizer)
    ft = config.finetune
    train, valid = _datasets(features_dir, with_text, ft)
    fusion = FusionWeightCallback(model, output_dir / "fusion.jsonl")
    if resume is None:
        (output_dir / "fusion.jsonl").unlink(missing_ok=True)
    trainer = Trainer(
        model,
        config.training,
        train,
        valid,
        output_dir=output_dir,
        collate_fn=_collate(features_dir, config, with_text, False),
        callbacks=[fusion, *callbacks],
        optimizer_factory=_optimizer_factory(model, config),
        save_best=_saver(features_dir, tokenizer),
    )
    result = trainer.train(resume_from=resume)
    metrics = dict(result.valid_metrics)
    predictions_dir = None
    if ddp.is_main_process():
        splits = {"valid": valid}
        test_path = features_dir / "test.parquet"
        if test_path.is_file():
            splits["test"] = FeatureDataset(
                test_path, with_text, ft.max_test_rows, ft.sample, ft.sample_seed
            )
        predictions_dir = output_dir / PREDICTIONS_DIR
        metrics |= write_predictions(trainer, splits, _user_column(features_dir), predictions_dir)
        add_row_keys(features_dir, splits, predictions_dir)
        if model.mix_weight is not None:  # the selected model's a, and where it started
            metrics["fusion_a"] = float(model.mix_weight.detach())
            if fusion.history:
                metrics["fusion_a_first_logged"] = fusion.history[0]["fusion_a"]
    model_dir = output_dir / MODEL_DIR
    if ddp.is_main_process():  # one writer under DDP; only rank 0 has the test metrics
        model.save_pretrained(model_dir, features_dir / "feature_map.json", tokenizer)
        _write_json(output_dir / "metrics.json", metrics)
    return StageResult(model_dir, result, metrics, predictions_dir=predictions_dir)


def write_predictions(
    trainer: Trainer,
    splits: Mapping[str, FeatureDataset | None],
    user_column: int | None,
    directory: Path,
) -> dict[str, float]:
    """Score each split with the trainer's (selected) model; write `<split>.parquet` with
    `label`, `prob` and `user_cold` (the row's user is OOV, i.e. unseen in train) and return
    the split's metrics overall and on warm/cold users (`<split>_auc`, `<split>_cold_auc`, ...)."""
    directory.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    for split, data in splits.items():
        if data is None:
            continue
        probs = trainer.predict(data)
        cold = (
            data.field_ids[:, user_column] == OOV_ID
            if user_column is not None
            else np.zeros(len(probs), dtype=bool)
        )
        table = pa.table(
            {"label": data.labels.astype(np.float64), "prob": probs, "user_cold": cold}
        )
        pq.write_table(table, directory / f"{split}.parquet")
        metrics |= split_metrics(
            split, data.labels, probs, cold if user_column is not None else None
        )
    return metrics


def add_row_keys(
    features_dir: Path, splits: Mapping[str, FeatureDataset | None], directory: Path
) -> None:
    """Add `user` (the raw user value, from the row's text: cold users all share the OOV id)
    and `item_train_count` (train events of the row's item; 0 when unseen) to each split's
    predictions file, for user-level (cluster) bootstrap intervals and long-tail slices. The
    user and item fields are those of the dataset spec's `role: user` / `role: item`; a spec
    without both leaves the files as they are."""
    fmap = load_feature_map(features_dir)
    names = fmap.field_names
    user_field, item_field = fmap.role_field("user"), fmap.role_field("item")
    if user_field is None or item_field is None:
        return
    user_col, item_col = names.index(user_field), names.index(item_field)
    item_counts = np.asarray(fmap.counts(item_field), dtype=np.int64)
    for split, data in splits.items():
        if data is None:
            continue
        source = pq.read_table(data.path, columns=["text", "char_spans"]).take(data.rows)
        texts = source["text"].to_pylist()
        spans = np.asarray(source["char_spans"].combine_chunks().flatten(), dtype=np.int64)
        spans = spans.reshape(len(texts), len(names), 2)[:, user_col]
        users = [t[a:b] for t, (a, b) in zip(texts, spans.tolist(), strict=True)]
        path = directory / f"{split}.parquet"
        table = pq.read_table(path)
        table = table.append_column("user", pa.array(users, pa.string()))
        item_ids = data.field_ids[:, item_col]
        counts = np.where(item_ids == OOV_ID, 0, item_counts[item_ids])  # OOV: below min-count
        table = table.append_column("item_train_count", pa.array(counts, pa.int64()))
        pq.write_table(table, path)


def _user_column(features_dir: Path) -> int | None:
    feature_map = load_feature_map(features_dir)
    user = feature_map.role_field("user")
    return None if user is None else feature_map.field_names.index(user)


def _check_tokenizer(features_dir: Path, tokenizer: Any) -> None:
    info = read_manifest(features_dir)["tokenizer"]
    if (
        info.get("mask_token_id") != tokenizer.mask_token_id
        or info.get("pad_token_id") != tokenizer.pad_token_id
    ):
        raise ValueError(
            f"{features_dir} was tokenized with a different tokenizer ({info.get('class')}); "
            "rebuild the features with the configured plm.name"
        )


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
