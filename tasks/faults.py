"""Fault injection for drills and tests: make a step fail once or run slowly on purpose.

`FLIP_FAULTS` holds comma-separated `step:action` items, e.g.
`FLIP_FAULTS="prepare-raw-data:fail-once,finetune:sleep=30"`. Actions:

- `fail-once`: the first attempt of the step in this process raises a transient `ConnectionError`
  (so the task's retry policy retries it);
- `sleep=S`: the step waits S seconds before working (time to kill a run mid-step);
- `step-sleep=S`: a training step (in-process) waits S seconds after every optimizer step, so a
  run can be killed between two checkpoints (`fault_callbacks`).

Unset (the default), every call is a no-op. Ops use it to rehearse the failure runbook in
docs/operations.md; tests use it to prove retries and resumption on a real Prefect server.
"""

from __future__ import annotations

import os
import time

from flip_core.training.callbacks import TrainerCallback, TrainerState

FAULTS_ENV = "FLIP_FAULTS"
failed_once: set[str] = set()  # steps whose fail-once fault fired in this process


def parse_faults(text: str) -> dict[str, list[str]]:
    """`"a:fail-once,b:sleep=3"` -> `{"a": ["fail-once"], "b": ["sleep=3"]}`."""
    faults: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        step, sep, action = item.partition(":")
        if not sep or not action:
            raise ValueError(f"{FAULTS_ENV}: expected step:action, got {item!r}")
        if action != "fail-once" and not action.startswith(("sleep=", "step-sleep=")):
            raise ValueError(
                f"{FAULTS_ENV}: unknown action {action!r} (fail-once, sleep=S, step-sleep=S)"
            )
        faults.setdefault(step, []).append(action)
    return faults


def inject_faults(step: str) -> None:
    """Apply the faults configured for `step` in `FLIP_FAULTS` (no-op when unset)."""
    for action in parse_faults(os.environ.get(FAULTS_ENV, "")).get(step, []):
        if action.startswith("sleep="):
            time.sleep(float(action.removeprefix("sleep=")))
        elif action == "fail-once" and step not in failed_once:
            failed_once.add(step)
            raise ConnectionError(f"injected transient failure in {step} ({FAULTS_ENV})")


class StepSleep(TrainerCallback):
    """Waits `seconds` after every optimizer step (the `step-sleep=S` fault)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step(self, state: TrainerState, logs: dict[str, float]) -> None:
        """Slow the training down."""
        time.sleep(self.seconds)


def fault_callbacks(step: str) -> list[TrainerCallback]:
    """Trainer callbacks for the `step-sleep` faults of `step` (empty when unset)."""
    actions = parse_faults(os.environ.get(FAULTS_ENV, "")).get(step, [])
    return [
        StepSleep(float(a.removeprefix("step-sleep=")))
        for a in actions
        if a.startswith("step-sleep=")
    ]
