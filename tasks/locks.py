"""Locks that keep two runs from writing the lake or moving registry aliases at the same time.

Writers wrap their critical section::

    with lake_lock(config):
        ...  # COPY new partitions, update _manifest.json

    with registry_lock(config):
        ...  # register a version, move the champion alias

Each is an OS file lock (released by the kernel if the process dies, so a killed run never leaves
a stale lock). Runs on several machines that share a lake or a registry also take a Prefect
global concurrency limit (`flip-lake`, `flip-registry`) when `FLIP_GLOBAL_LOCKS=1`; create the
limits once with `prefect gcl create flip-lake --limit 1` (see docs/operations.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlparse

from filelock import FileLock
from filelock import Timeout as FileLockTimeout

from flip_core.config import FlipConfig
from flip_core.data.build import dataset_spec
from flip_core.layout import DataLayout

DEFAULT_TIMEOUT_S = 6 * 3600.0
GLOBAL_LOCKS_ENV = "FLIP_GLOBAL_LOCKS"

_log = logging.getLogger(__name__)


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return _log


@contextmanager
def exclusive(name: str, lock_file: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Hold the file lock `lock_file` (and the global limit `flip-<name>` if enabled).

    Raises `TimeoutError` when the lock is still held by another run after `timeout_s`.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file))
    with ExitStack() as stack:
        if os.environ.get(GLOBAL_LOCKS_ENV, "") in {"1", "true"}:
            from prefect.concurrency.sync import concurrency

            stack.enter_context(
                concurrency(f"flip-{name}", occupy=1, timeout_seconds=timeout_s, strict=True)
            )
        start = time.monotonic()
        try:
            lock.acquire(timeout=0)
        except FileLockTimeout:
            _logger().info("Waiting for the %s lock %s (held by another run)", name, lock_file)
            try:
                lock.acquire(timeout=timeout_s)
            except FileLockTimeout:
                raise TimeoutError(
                    f"{name} lock {lock_file} still held by another run after {timeout_s:.0f} s"
                ) from None
            _logger().info("Got the %s lock after %.1f s", name, time.monotonic() - start)
        stack.callback(lock.release)
        yield


def lake_lock_file(config: FlipConfig) -> Path:
    """The lock file guarding `<data_root>/lake/<dataset>`."""
    return DataLayout(config.paths.data_root).lock(f"lake-{dataset_spec(config).name}")


def registry_lock_file(config: FlipConfig) -> Path:
    """The lock file guarding the MLflow registry at `mlflow.tracking_uri`.

    Next to the database for `sqlite:///` URIs, else under the data root keyed by the URI.
    """
    uri = config.mlflow.tracking_uri
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite" and uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        return db.with_name(db.name + ".lock")
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return DataLayout(config.paths.data_root).lock(f"registry-{digest}")


@contextmanager
def lake_lock(config: FlipConfig, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Exclusive access to the dataset's lake (ingest writes, manifest updates)."""
    with exclusive("lake", lake_lock_file(config), timeout_s):
        yield


@contextmanager
def registry_lock(config: FlipConfig, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Exclusive access to the model registry (register, move aliases)."""
    with exclusive("registry", registry_lock_file(config), timeout_s):
        yield
