"""One trainer for every stage (ID-model training, FLIP pretraining, FLIP finetuning).

Contract with models: `model(**batch)` returns an object with a scalar `loss` and, for CTR
models, `logits [B]`. Batch keys the model's `forward` does not accept are dropped (so one
collate can feed several models). The trainer handles device choice, bf16 autocast on capable
GPUs, gradient accumulation and clipping, optional `torch.compile`, DDP under `torchrun`,
checkpoints with exact resume, validation with early stopping and best-model selection,
a progress bar and callbacks.

`training.batch_size` is the global batch per micro-step: under DDP each of N processes takes
`batch_size / N` rows, so one process and N processes take the same optimizer steps.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from flip_core.config import TrainingConfig
from flip_core.metrics import BinaryMetricAccumulator
from flip_core.models.saving import has_weights, load_weights, save_weights
from flip_core.training import distributed as ddp
from flip_core.training.callbacks import TrainerCallback, TrainerState
from flip_core.training.checkpoint import (
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from flip_core.training.data import (
    IndexBatchSampler,
    ResumableDistributedSampler,
    ShardSampler,
)
from flip_core.training.progress import ProgressBar

Batch = dict[str, Tensor]


@dataclass
class TrainResult:
    """Summary of a `Trainer.train()` call."""

    global_step: int
    epochs_completed: int
    best_metric: float | None
    best_step: int | None
    monitor: str
    stopped_early: bool
    samples_per_s: float
    valid_metrics: dict[str, float] = field(default_factory=dict)
    best_dir: Path | None = None
    history: list[dict[str, float]] = field(default_factory=list)


class _EarlyStopError(Exception):
    """Raised internally when patience runs out."""


class Trainer:
    """Train `model` on `train_dataset`, select on `valid_dataset`, checkpoint to `output_dir`.

    `collate_fn` builds a batch dict from a list of rows (or is `keep_batch` for datasets with
    `__getitems__`); its `set_epoch(epoch)`, if any, is called before each epoch.
    `eval_collate_fn` (default: `collate_fn`) builds validation batches.
    `config.monitor` picks the selection metric ("auto": valid AUC when the
    model returns `logits` and the batch has `labels`, else valid loss). The best weights go to
    `<output_dir>/best/` (via `model.save_pretrained` when the model has it) and loaded back into
    `model` when training ends.
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainingConfig,
        train_dataset: Dataset[Any],
        valid_dataset: Dataset[Any] | None = None,
        *,
        output_dir: Path | str,
        collate_fn: Callable[[Any], Batch] | None = None,
        callbacks: Sequence[TrainerCallback] = (),
        optimizer_factory: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
        save_best: Callable[[nn.Module, Path], None] | None = None,
        eval_collate_fn: Callable[[Any], Batch] | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.train_dataset = train_dataset
        self.valid_dataset = valid_dataset
        self.output_dir = Path(output_dir)
        self.collate_fn = collate_fn
        self.eval_collate_fn = eval_collate_fn or collate_fn
        self.callbacks = list(callbacks)
        self.optimizer_factory = optimizer_factory
        self.save_best = save_best
        if config.num_threads is not None:
            torch.set_num_threads(config.num_threads)
        self.device = ddp.resolve_device(config.device)
        self.distributed = ddp.init_distributed(self.device)
        self.world_size = ddp.world_size()
        if config.batch_size % self.world_size:
            raise ValueError(
                f"training.batch_size={config.batch_size} is not divisible by "
                f"{self.world_size} processes"
            )
        self.local_batch_size = config.batch_size // self.world_size
        self.use_bf16 = self._want_bf16()
        self.model.to(self.device)
        self._forward_keys = _accepted_keys(model)
        self.state = TrainerState(is_main=ddp.is_main_process())
        self.monitor = self._monitor_name()

    # -- public API ------------------------------------------------------------------------------

    def train(self, resume_from: Path | str | None = None) -> TrainResult:
        """Run training; `resume_from` is a checkpoint directory or "latest" (None: fresh)."""
        cfg = self.config
        seed_everything(cfg.seed + ddp.rank())
        runner = self._wrap_model()
        optimizer = self._make_optimizer()
        sampler = ResumableDistributedSampler(
            self.train_dataset, self.world_size, ddp.rank(), shuffle=True, seed=cfg.seed
        )
        steps_per_epoch = math.ceil(
            math.ceil(len(sampler) / self.local_batch_size) / cfg.grad_accum_steps
        )
        total_steps = cfg.max_steps or steps_per_epoch * cfg.epochs
        scheduler = self._make_scheduler(optimizer, total_steps)
        checkpoint = self._resolve_resume(resume_from)
        if checkpoint is not None:
            self.state = load_checkpoint(checkpoint, self.model, optimizer, scheduler, self.device)
            self.state.is_main = ddp.is_main_process()
        for cb in self.callbacks:
            cb.on_train_begin(self.state)
        self._last_valid: dict[str, float] = {}
        bar = ProgressBar(total_steps, self.state.step, cfg.progress and ddp.is_main_process())
        try:
            while self.state.epoch < cfg.epochs and not self._done(total_steps):
                self._run_epoch(runner, optimizer, scheduler, sampler, bar, total_steps)
        except _EarlyStopError:
            self.state.stopped_early = True
        finally:
            bar.close()
        return self._finish(self.monitor, self._last_valid)  # kept through an early stop

    @torch.no_grad()
    def evaluate(self, dataset: Dataset[Any], prefix: str = "valid") -> dict[str, float]:
        """Loss (row-weighted mean of `output.loss`) and, for CTR outputs, exact AUC and log loss
        over the whole `dataset`; sharded and gathered under DDP. Keys: `<prefix>_<metric>`."""
        was_training = self.model.training
        self.model.eval()
        loader = DataLoader(
            dataset,
            batch_size=self.config.eval_batch_size or self.local_batch_size,
            sampler=ShardSampler(len(dataset), self.world_size, ddp.rank()),  # type: ignore[arg-type]
            collate_fn=self.eval_collate_fn,
            generator=torch.Generator(),
        )
        acc = BinaryMetricAccumulator()
        loss_sum, rows = 0.0, 0
        for raw in loader:
            batch = self._to_device(raw)
            with self._autocast():
                out = self.model(**batch)
            size = _batch_rows(batch)
            if getattr(out, "loss", None) is not None:
                loss_sum += float(out.loss) * size
            rows += size
            logits = getattr(out, "logits", None)
            if logits is not None and "labels" in batch and logits.dim() == 1:
                acc.update(logits, batch["labels"])
        self.model.train(was_training)
        loss_sum, rows_f = ddp.sum_across_ranks([loss_sum, float(rows)], self.device)
        metrics = {f"{prefix}_loss": loss_sum / rows_f if rows_f else math.nan}
        ctr = acc.compute(gather=self.distributed)
        if ctr["rows"] > 0:
            metrics[f"{prefix}_auc"] = ctr["auc"]
            metrics[f"{prefix}_logloss"] = ctr["logloss"]
        return metrics

    @torch.no_grad()
    def predict(self, dataset: Dataset[Any]) -> npt.NDArray[np.float64]:
        """Click probabilities for every row of `dataset`, in order, computed in this process
        alone (no sharding: call it on the main rank)."""
        was_training = self.model.training
        self.model.eval()
        loader = DataLoader(
            dataset,
            batch_size=self.config.eval_batch_size or self.local_batch_size,
            collate_fn=self.eval_collate_fn,
        )
        parts = []
        for raw in loader:
            with self._autocast():
                logits = self.model(**self._to_device(raw)).logits
            parts.append(torch.sigmoid(logits.detach().double()).cpu().numpy())
        self.model.train(was_training)
        return np.concatenate(parts) if parts else np.zeros(0, np.float64)

    # -- epoch and step --------------------------------------------------------------------------

    def _run_epoch(
        self,
        runner: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        sampler: ResumableDistributedSampler,
        bar: ProgressBar,
        total_steps: int,
    ) -> dict[str, float]:
        cfg = self.config
        sampler.set_epoch(self.state.epoch)
        set_collate_epoch = getattr(self.collate_fn, "set_epoch", None)
        if callable(set_collate_epoch):  # e.g. fresh pretraining masks each epoch
            set_collate_epoch(self.state.epoch)
        sampler.set_skip(self.state.batch_in_epoch * self.local_batch_size)
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=IndexBatchSampler(sampler, self.local_batch_size),
            collate_fn=self.collate_fn,
            generator=torch.Generator(),  # keeps the global RNG untouched by the loader
        )
        runner.train()
        num_batches = len(loader)
        # the loss is summed on the device and read on log steps only: no per-step host sync
        window_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        window_steps, window_samples, window_seconds = 0, 0, 0.0
        full_batches = max(1, math.ceil(sampler.num_samples / self.local_batch_size))
        pending = 0
        tick = time.perf_counter()
        for i, raw in enumerate(loader):
            batch = self._to_device(raw)
            remaining = num_batches - i
            accum = min(cfg.grad_accum_steps, pending + remaining)
            is_update = pending + 1 == accum
            sync = nullcontext() if is_update or not self.distributed else runner.no_sync()  # type: ignore[operator]
            with sync:
                with self._autocast():
                    out = runner(**batch)
                loss = out.loss
                (loss / accum).backward()
            pending += 1
            self.state.batch_in_epoch += 1
            rows = _batch_rows(batch) * self.world_size
            self.state.samples_seen += rows
            window_samples += rows
            window_loss += loss.detach().double()
            window_steps += 1
            if is_update:
                self._optimizer_step(optimizer, scheduler)
                pending = 0
            if not is_update:
                continue
            log_step = self.state.step % cfg.log_every_steps == 0 or self.state.step == total_steps
            if log_step:  # the host sync happens here, inside the timed region
                window_mean = float(window_loss) / window_steps
            now = time.perf_counter()
            self.state.train_seconds += now - tick
            window_seconds += now - tick
            logs: dict[str, float] = {}
            if log_step:
                logs = {
                    "loss": ddp.mean_across_ranks(window_mean, self.device),
                    "lr": float(scheduler.get_last_lr()[0]),
                    "samples_per_s": window_samples / max(window_seconds, 1e-9),
                    "epoch": self.state.epoch + self.state.batch_in_epoch / full_batches,
                }
                self.state.log_history.append({"step": float(self.state.step), **logs})
                window_loss.zero_()
                window_steps, window_samples, window_seconds = 0, 0, 0.0
            bar.update(1, logs.get("loss"), logs.get("samples_per_s"))
            for cb in self.callbacks:
                cb.on_step(self.state, logs)
            if cfg.eval_every_steps and self.state.step % cfg.eval_every_steps == 0:
                self._validate()
            if self.state.step % cfg.checkpoint_every_steps == 0:
                self._checkpoint(optimizer, scheduler)
            if self.state.step >= total_steps and i + 1 < num_batches:  # max_steps mid-epoch
                metrics = self._validate(raise_on_stop=False)
                self._checkpoint(optimizer, scheduler)
                return metrics
            tick = time.perf_counter()
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        metrics = self._validate(raise_on_stop=False)
        for cb in self.callbacks:
            cb.on_epoch_end(self.state, metrics)
        self._checkpoint(optimizer, scheduler)
        if self.state.stopped_early:
            raise _EarlyStopError
        return metrics

    def _optimizer_step(
        self, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler
    ) -> None:
        if self.config.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        self.state.step += 1

    # -- validation, selection, checkpoints ------------------------------------------------------

    def _validate(self, raise_on_stop: bool = True) -> dict[str, float]:
        if self.valid_dataset is None:
            return {}
        if self._last_valid.get("step") == float(self.state.step):
            # already validated at this step (a periodic eval on the epoch's last step): the same
            # metrics, neither recomputed nor counted twice towards early stopping
            return dict(self._last_valid)
        metrics = self.evaluate(self.valid_dataset, "valid")
        monitor = self.monitor = self._monitor_name(metrics)
        value = metrics.get(monitor, math.nan)
        higher = monitor.endswith("auc")
        best = self.state.best_metric
        improved = not math.isnan(value) and (
            best is None or (value > best if higher else value < best)
        )
        if improved:
            self.state.best_metric, self.state.best_step = value, self.state.step
            self.state.bad_evals = 0
            self._save_best()
        else:
            self.state.bad_evals += 1
        patience = self.config.early_stopping_patience
        if patience and self.state.bad_evals >= patience:
            self.state.stopped_early = True
        metrics["step"] = float(self.state.step)
        self._last_valid = metrics
        self.state.log_history.append({**metrics})
        for cb in self.callbacks:
            cb.on_eval(self.state, metrics)
        if self.state.stopped_early and raise_on_stop:
            raise _EarlyStopError
        return metrics

    def _save_best(self) -> None:
        if not ddp.is_main_process():
            return
        best_dir = self.output_dir / "best"
        if self.save_best is not None:
            self.save_best(self.model, best_dir)
        elif callable(save_pretrained := getattr(self.model, "save_pretrained", None)):
            save_pretrained(best_dir)
        else:
            best_dir.mkdir(parents=True, exist_ok=True)
            save_weights(self.model, best_dir)

    def _checkpoint(
        self, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler
    ) -> None:
        path = save_checkpoint(
            self.output_dir / "checkpoints",
            self.model,
            optimizer,
            scheduler,
            self.state,
            self.config.keep_checkpoints,
        )
        for cb in self.callbacks:
            cb.on_checkpoint(self.state, path)

    def _finish(self, monitor: str, last_valid: dict[str, float]) -> TrainResult:
        best_dir = self.output_dir / "best"
        ddp.barrier()
        if self.state.best_step is not None and has_weights(best_dir):
            load_weights(self.model, best_dir, str(self.device))
        else:
            best_dir = None  # type: ignore[assignment]
        result = TrainResult(
            global_step=self.state.step,
            epochs_completed=self.state.epoch,
            best_metric=self.state.best_metric,
            best_step=self.state.best_step,
            monitor=monitor,
            stopped_early=self.state.stopped_early,
            samples_per_s=self.state.samples_seen / max(self.state.train_seconds, 1e-9),
            valid_metrics=last_valid,
            best_dir=best_dir,
            history=list(self.state.log_history),
        )
        summary = {
            "global_step": float(result.global_step),
            "samples_per_s": result.samples_per_s,
            **({f"best_{monitor}": result.best_metric} if result.best_metric is not None else {}),
        }
        for cb in self.callbacks:
            cb.on_train_end(self.state, summary)
        return result

    # -- setup helpers ---------------------------------------------------------------------------

    def _want_bf16(self) -> bool:
        precision = self.config.precision
        if precision == "fp32":
            return False
        capable = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        if precision == "bf16" and not capable:
            raise RuntimeError("training.precision=bf16 needs a CUDA GPU with bf16 support")
        return capable

    def _autocast(self) -> AbstractContextManager[Any]:
        if not self.use_bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def _wrap_model(self) -> nn.Module:
        runner: nn.Module = self.model
        if self.config.compile:
            runner = torch.compile(runner)  # type: ignore[assignment]
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # Some parameters can get no gradient in a step on one rank (seen with FLIP
            # pretraining under torchrun): DDP must not wait for their gradients.
            runner = DistributedDataParallel(runner, device_ids=ids, find_unused_parameters=True)
        return runner

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.optimizer_factory is not None:
            return self.optimizer_factory(params)
        fused = self.device.type in ("cpu", "cuda") and all(p.is_floating_point() for p in params)
        return torch.optim.AdamW(
            params,
            lr=self.config.learning_rate,
            weight_decay=self.config.weight_decay,
            fused=fused,  # one kernel per step instead of a loop of small ones
        )

    def _make_scheduler(
        self, optimizer: torch.optim.Optimizer, total_steps: int
    ) -> torch.optim.lr_scheduler.LRScheduler:
        kind, warmup = self.config.scheduler, self.config.warmup_steps

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if kind == "constant":
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            if kind == "linear":
                return 1.0 - progress
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _resolve_resume(self, resume_from: Path | str | None) -> Path | None:
        if resume_from is None:
            return None
        if str(resume_from) == "latest":
            found = list_checkpoints(self.output_dir / "checkpoints")
            return found[-1] if found else None
        path = Path(resume_from)
        if not (path / "trainer_state.json").is_file():
            raise FileNotFoundError(f"{path} is not a checkpoint directory")
        return path

    def _monitor_name(self, metrics: Mapping[str, float] | None = None) -> str:
        if self.config.monitor != "auto":
            return self.config.monitor
        if metrics is None:
            return "auto"
        return "valid_auc" if "valid_auc" in metrics else "valid_loss"

    def _done(self, total_steps: int) -> bool:
        return self.state.step >= total_steps or self.state.stopped_early

    def _to_device(self, batch: Mapping[str, Any]) -> Batch:
        keys = self._forward_keys
        return {
            k: v.to(self.device, non_blocking=True)
            for k, v in batch.items()
            if keys is None or k in keys
        }


def _accepted_keys(model: nn.Module) -> set[str] | None:
    """Parameter names of `model.forward`, or None when it takes **kwargs."""
    params = inspect.signature(model.forward).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def _batch_rows(batch: Batch) -> int:
    return len(next(iter(batch.values())))
