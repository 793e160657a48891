"""Fault injection for drills and tests: make a step fail once or run slowly on purpose.

`FLIP_FAULTS` holds comma-separated `step:action` items, e.g.
`FLIP_FAULTS="prepare-raw-data:fail-once,finetune:sleep=30"`. Actions:

- `fail-once`: the first attempt of the step in this process raises a transient `ConnectionError`
  (so the task's retry policy retries it);
- `sleep=S`: the step waits S seconds before working (time to kill a run mid-step).

Unset (the default), every call is a no-op. Ops use it to rehearse the failure runbook in
docs/operations.md; tests use it to prove retries and resumption on a real Prefect server.
"""

from __future__ import annotations

import os
import time

FAULTS_ENV = "FLIP_FAULTS"
_failed_once: set[str] = set()


def parse_faults(text: str) -> dict[str, list[str]]:
    """`"a:fail-once,b:sleep=3"` -> `{"a": ["fail-once"], "b": ["sleep=3"]}`."""
    faults: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        step, sep, action = item.partition(":")
        if not sep or not action:
            raise ValueError(f"{FAULTS_ENV}: expected step:action, got {item!r}")
        if action != "fail-once" and not action.startswith("sleep="):
            raise ValueError(f"{FAULTS_ENV}: unknown action {action!r} (fail-once, sleep=S)")
        faults.setdefault(step, []).append(action)
    return faults


def inject_faults(step: str) -> None:
    """Apply the faults configured for `step` in `FLIP_FAULTS` (no-op when unset)."""
    for action in parse_faults(os.environ.get(FAULTS_ENV, "")).get(step, []):
        if action.startswith("sleep="):
            time.sleep(float(action.removeprefix("sleep=")))
        elif step not in _failed_once:
            _failed_once.add(step)
            raise ConnectionError(f"injected transient failure in {step} ({FAULTS_ENV})")
