"""Shared fixtures: offline environment, an isolated Prefect home, synthetic raw data."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flip_core.data.synth import write_synthetic_movielens

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

for _key, _value in {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_OFFLINE": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}.items():
    os.environ.setdefault(_key, _value)


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic MovieLens-shaped raw folder shared by the session (treat as read-only)."""
    out = tmp_path_factory.mktemp("synthetic-raw")
    write_synthetic_movielens(out, users=200, movies=150, ratings_per_user=40, seed=7)
    return out


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[None]:
    """One temporary Prefect API (sqlite in a temp dir) for the in-process flow tests."""
    from prefect.testing.utilities import prefect_test_harness

    timeout = int(os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"])
    with prefect_test_harness(server_startup_timeout=timeout):
        yield


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 (sqlite, local artifacts) for the session; its URI."""
    from tests.mlflow_server import run_mlflow_server

    with run_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server.uri


@pytest.fixture(scope="session")
def tiny_plm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved 1-layer, 32-wide BERT over MiniLM's real tokenizer (a local `plm.name`)."""
    from tests.tiny_plm import save_tiny_bert

    return save_tiny_bert(tmp_path_factory.mktemp("tiny-plm"))


@pytest.fixture(autouse=True)
def _forget_mlflow_registry_uri() -> Iterator[None]:
    """Test isolation: scoring sets MLflow's process-wide registry URI (`tasks.score`), which
    would otherwise route a later test's model versions to an earlier test's store."""
    yield
    registry = sys.modules.get("mlflow.tracking._model_registry.utils")
    if registry is not None:
        registry._registry_uri = None  # type: ignore[attr-defined]
