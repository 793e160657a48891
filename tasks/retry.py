"""Retry policy shared by tasks: retry transient I/O, never bad input."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import State, TaskRun

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    NotADirectoryError,
    ValueError,
    TypeError,
    KeyError,
)


def retry_transient(task: Any, task_run: TaskRun, state: State) -> bool:
    """Prefect `retry_condition_fn`: retry unless the failure is a permanent input error."""
    try:
        state.result()
    except PERMANENT_ERRORS:
        return False
    except Exception:
        return True
    return True


def io_retries(times: int, delay_s: float = 5.0) -> dict[str, Any]:
    """`@task` keywords: retry a transient failure `times` times, `delay_s` apart."""
    return {"retries": times, "retry_delay_seconds": delay_s, "retry_condition_fn": retry_transient}
