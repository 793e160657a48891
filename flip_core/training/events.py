"""Record a training's callback events to JSON lines and replay them into other callbacks later.

A stage trained in a child process (e.g. under `torchrun`) records what its callbacks saw
(`EventRecorder`, main rank only); the parent replays the file into its own callbacks
(`replay_events`), e.g. to log the metrics to a tracking server the child never talks to.
Each line is `{"hook": "<on_*>", "state": {...}, "values": {...}}`; the recorded values are the
ones the hooks saw after the stage's own callbacks filled them in.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flip_core.training.callbacks import TrainerCallback, TrainerState

_STATE_KEYS = ("epoch", "step", "batch_in_epoch", "samples_seen", "best_metric", "best_step")
_HOOKS = ("on_train_begin", "on_step", "on_eval", "on_epoch_end", "on_train_end")


class EventRecorder(TrainerCallback):
    """Append every callback event to a JSON-lines file (main process only)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def _write(self, hook: str, state: TrainerState, values: dict[str, float] | None) -> None:
        if not state.is_main:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "hook": hook,
            "state": {k: getattr(state, k) for k in _STATE_KEYS},
            "values": dict(values or {}),
        }
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")

    def on_train_begin(self, state: TrainerState) -> None:
        """The state after a resume (step 0 when fresh)."""
        self._write("on_train_begin", state, None)

    def on_step(self, state: TrainerState, logs: dict[str, float]) -> None:
        """Step logs (only on the trainer's log steps)."""
        if logs:
            self._write("on_step", state, logs)

    def on_eval(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """Validation metrics."""
        self._write("on_eval", state, metrics)

    def on_epoch_end(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """End of an epoch."""
        self._write("on_epoch_end", state, metrics)

    def on_train_end(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """The final summary."""
        self._write("on_train_end", state, metrics)


class StartStep(TrainerCallback):
    """Remembers the step training starts from (> 0 after a resume) and announces a resume."""

    def __init__(self, announce: Callable[[str], None] | None = None) -> None:
        self.step = 0
        self.announce = announce

    def on_train_begin(self, state: TrainerState) -> None:
        """Called after the trainer restored its checkpoint, if any."""
        self.step = state.step
        if state.step and state.is_main and self.announce is not None:
            self.announce(f"resumed from step {state.step} (epoch {state.epoch})")


def read_events(path: Path | str) -> list[dict[str, Any]]:
    """The recorded events (an unfinished last line, from a killed child, is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def replay_events(path: Path | str, callbacks: Sequence[TrainerCallback]) -> int:
    """Call each callback's hooks as the recorded training did; returns the number of events."""
    events = read_events(path)
    for event in events:
        hook = event.get("hook")
        if hook not in _HOOKS:
            raise ValueError(f"{path}: unknown hook {hook!r}")
        state = TrainerState(**event["state"], is_main=True)
        for cb in callbacks:
            method = getattr(cb, hook)
            if hook == "on_train_begin":
                method(state)
            else:
                method(state, dict(event["values"]))
    return len(events)
