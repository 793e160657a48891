"""Trainer callbacks: hooks that later stages (MLflow logging, pruning) plug into.

Every hook receives the trainer's `TrainerState` and a flat `dict[str, float]` of metrics. Hooks
run on every rank; use `state.is_main` to log once under DDP.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class TrainerState:
    """Where training stands; saved in every checkpoint (trainer_state.json)."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    samples_seen: int = 0
    train_seconds: float = 0.0
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    is_main: bool = True
    log_history: list[dict[str, float]] = field(default_factory=list)

    def to_json(self) -> str:
        """JSON text of the state."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainerState:
        """Inverse of `to_json`."""
        return cls(**json.loads(text))


class TrainerCallback:
    """Base class with no-op hooks; override the ones you need."""

    def on_train_begin(self, state: TrainerState) -> None:
        """Before the first step (after a resume, if any)."""

    def on_step(self, state: TrainerState, logs: dict[str, float]) -> None:
        """After each optimizer step; `logs` has `loss`, `lr`, `samples_per_s` on log steps."""

    def on_eval(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """After each validation pass (`valid_auc`, `valid_logloss`, `valid_loss`, ...)."""

    def on_epoch_end(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """After each epoch's validation and checkpoint."""

    def on_checkpoint(self, state: TrainerState, path: Path) -> None:
        """After a checkpoint directory is complete."""

    def on_train_end(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """Once, with the final summary (best metric, samples/s)."""


class JsonlMetricsCallback(TrainerCallback):
    """Append every step log and eval to a JSON-lines file (main process only)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _write(self, state: TrainerState, kind: str, values: dict[str, float]) -> None:
        if not state.is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"kind": kind, "step": state.step, "epoch": state.epoch, **values}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def on_step(self, state: TrainerState, logs: dict[str, float]) -> None:
        """Write step logs."""
        if logs:
            self._write(state, "step", logs)

    def on_eval(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """Write eval metrics."""
        self._write(state, "eval", metrics)
