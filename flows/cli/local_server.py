"""A temporary Prefect API for `flip run` that dies with the process that started it.

Without a configured `PREFECT_API_URL`, Prefect starts a temporary server as a plain child
process and stops it at interpreter exit; a SIGKILLed `flip run` never reaches that and leaves
the server running. `local_prefect_server()` starts the same server itself (uvicorn with
Prefect's app factory, bound to 127.0.0.1, the UI off) behind `tasks.child_process`'s
death-signal shim, points the flow at it, and stops it when the block ends.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tasks.child_process import die_with_parent, shim_env, stop


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(port: int) -> list[str]:
    """The uvicorn line Prefect itself uses for its temporary server."""
    import prefect

    return [
        sys.executable, "-m", "uvicorn",
        "--app-dir", str(Path(prefect.__file__).resolve().parent.parent),
        "--factory", "prefect.server.api.server:create_app",
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "error", "--lifespan", "on",
    ]  # fmt: skip


def _wait_healthy(proc: subprocess.Popen[bytes], api: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the temporary Prefect server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{api}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the temporary Prefect server was not healthy after {timeout_s:.0f} s")


@contextmanager
def local_prefect_server() -> Iterator[str | None]:
    """Yield the API URL of a temporary server when no `PREFECT_API_URL` is set (else None)."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        get_current_settings,
        temporary_settings,
    )

    if PREFECT_API_URL.value():
        yield None
        return
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        **get_current_settings().to_environment_variables(exclude_unset=True),
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    proc = subprocess.Popen(die_with_parent(server_command(port)), env=shim_env(env))
    try:
        _wait_healthy(proc, api, float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
        with temporary_settings(updates={PREFECT_API_URL: api}):
            try:
                yield api
            finally:
                _flush_api_logs()
    finally:
        stop(proc, grace_s=10)


def _flush_api_logs(timeout_s: float = 10.0) -> None:
    """Send the run's queued log lines while the server is still up (otherwise the log worker
    retries at interpreter exit against a stopped server and prints 'Error logging to API')."""
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=timeout_s)
