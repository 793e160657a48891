"""Serving and batch scoring of the champion: `mlflow models serve`, `flip score`, the flow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from flip_core.config import FlipConfig, load_config
from flip_core.scoring import RawRowScorer
from flows.cli import app
from tasks import registry, tracking
from tasks.pyfunc import OUTPUT_COLUMN
from tests.ctr_models import TrainedModel, raw_source, read_raw_rows, train_flip_id
from tests.mlflow_server import MLFLOW_BIN, free_port, stop_group, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RAW_COLUMNS = ["user_id", "gender", "age", "occupation", "zip", "movie_id", "title", "genres"]


@pytest.fixture(scope="module")
def rows(synthetic_raw: Path) -> pd.DataFrame:
    frame = read_raw_rows(raw_source(synthetic_raw))
    sample = frame.tail(40)[RAW_COLUMNS].reset_index(drop=True)
    sample.loc[:4, "user_id"] = np.arange(9_000_001, 9_000_006)  # unseen users
    sample.loc[3:7, "movie_id"] = np.arange(8_000_001, 8_000_006)  # unseen movies
    sample.loc[6, "zip"] = "unseen-zip"
    return sample


@pytest.fixture(scope="module")
def champion(
    mlflow_server: str, synthetic_raw: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[FlipConfig, TrainedModel]:
    torch.set_num_threads(1)
    train_rows = read_raw_rows(raw_source(synthetic_raw))
    model = train_flip_id(train_rows, tmp_path_factory.mktemp("serve") / "m", steps=60)
    tag = uuid.uuid4().hex[:8]
    cfg = load_config(
        overrides=[
            f"mlflow.tracking_uri={mlflow_server}",
            f"mlflow.experiment=serve-{tag}",
            f"mlflow.registered_model=serve-{tag}",
        ]
    )
    metrics = {"valid_auc": model.valid_auc, "test_logloss": model.test_logloss}
    with tracking.tracked_run(cfg, "serve", "flow-serve") as run:
        result = registry.publish_model(cfg, run.run_id, model.model_dir, metrics, "p", "h")
    assert result.champion
    return cfg, model


def _expected(model: TrainedModel, rows: pd.DataFrame) -> np.ndarray:
    return RawRowScorer.from_pretrained(model.model_dir).predict_proba(rows)


@pytest.fixture
def served(champion: tuple[FlipConfig, TrainedModel], tmp_path: Path) -> Iterator[str]:
    cfg, _ = champion
    port = free_port()
    # `--env-manager local` runs uvicorn from PATH: serve from the project's environment.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": cfg.mlflow.tracking_uri, "PATH": path}
    cmd = [
        str(MLFLOW_BIN), "models", "serve",
        "-m", f"models:/{cfg.mlflow.registered_model}@champion",
        "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/ping", 240, proc)
            yield f"http://127.0.0.1:{port}"
        except Exception:
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise
        finally:
            stop_group(proc)


def test_models_serve_returns_probabilities_for_raw_json_rows(
    served: str, champion: tuple[FlipConfig, TrainedModel], rows: pd.DataFrame
) -> None:
    records = json.loads(rows.to_json(orient="records"))
    request = urllib.request.Request(
        f"{served}/invocations",
        data=json.dumps({"dataframe_records": records}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        body = json.loads(resp.read())
    probs = np.array([p[OUTPUT_COLUMN] for p in body["predictions"]])
    assert probs.shape == (len(rows),)
    assert np.all((probs > 0) & (probs < 1))
    np.testing.assert_allclose(probs, _expected(champion[1], rows), rtol=1e-5)


def test_flip_score_streams_parquet_and_csv(
    champion: tuple[FlipConfig, TrainedModel], rows: pd.DataFrame, tmp_path: Path
) -> None:
    cfg, model = champion
    rows.to_parquet(tmp_path / "raw.parquet", index=False)
    rows.to_csv(tmp_path / "raw.csv", index=False)
    uri = f"models:/{cfg.mlflow.registered_model}@champion"
    runner = CliRunner()
    for name in ("raw.parquet", "raw.csv"):
        out = tmp_path / f"{name}.scores.parquet"
        result = runner.invoke(
            app,
            ["score", "--model", uri, "--input", str(tmp_path / name), "--output", str(out),
             "--chunk-rows", "7", "--set", f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert f"scored {len(rows)} rows in" in result.output
        scored = pd.read_parquet(out)
        assert list(scored.columns) == ["user_id", "movie_id", OUTPUT_COLUMN]
        assert scored["user_id"].tolist() == rows["user_id"].tolist()
        np.testing.assert_allclose(scored[OUTPUT_COLUMN], _expected(model, rows), rtol=1e-5)


def test_flip_score_bad_input_fails_with_one_line(
    champion: tuple[FlipConfig, TrainedModel], rows: pd.DataFrame, tmp_path: Path
) -> None:
    cfg, _ = champion
    uri = f"models:/{cfg.mlflow.registered_model}@champion"
    rows.drop(columns=["zip"]).to_parquet(tmp_path / "nozip.parquet", index=False)
    (tmp_path / "raw.json").write_text("[]")
    cases = {
        str(tmp_path / "missing.parquet"): "does not exist",
        str(tmp_path / "raw.json"): "unsupported format",
        str(tmp_path / "nozip.parquet"): "zip",
    }
    tracking_set = f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}"
    for path, message in cases.items():
        args = ["score", "--model", uri, "--input", path, "--output", str(tmp_path / "o.parquet")]
        result = CliRunner().invoke(app, [*args, "--set", tracking_set])
        assert result.exit_code == 2, result.output
        last_line = result.output.strip().splitlines()[-1]  # above it: download progress
        assert last_line.startswith("error: ") and message in last_line
        assert not (tmp_path / "o.parquet").exists()
    bad_model = [
        "score", "--model", "models:/no-such-model@champion",
        "--input", str(tmp_path / "nozip.parquet"), "--output", str(tmp_path / "o.parquet"),
        "--set", tracking_set,
    ]  # fmt: skip
    result = CliRunner().invoke(app, bad_model)
    assert result.exit_code == 2 and "cannot load model" in result.output
    assert f"no-such-model not found in {cfg.mlflow.tracking_uri}" in result.output


def test_flip_score_reads_mlflow_tracking_uri_from_the_environment(
    champion: tuple[FlipConfig, TrainedModel],
    rows: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg, model = champion
    rows.to_parquet(tmp_path / "raw.parquet", index=False)
    out = tmp_path / "scores.parquet"
    args = ["score", "--model", f"models:/{cfg.mlflow.registered_model}@champion"]
    args += ["--input", str(tmp_path / "raw.parquet"), "--output", str(out)]
    monkeypatch.chdir(tmp_path)  # the default store would be ./mlflow.db here
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cfg.mlflow.tracking_uri)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(out)
    np.testing.assert_allclose(scored[OUTPUT_COLUMN], _expected(model, rows), rtol=1e-5)
    assert not (tmp_path / "mlflow.db").exists()

    # explicit config wins over the environment
    missing = f"sqlite:///{tmp_path}/elsewhere.db"
    result = CliRunner().invoke(app, [*args, "--set", f"mlflow.tracking_uri={missing}"])
    assert result.exit_code == 2
    assert f"no MLflow store at {missing}" in result.output
    assert not (tmp_path / "elsewhere.db").exists()  # no empty store made on the way

    # without either, the default ./mlflow.db, which is not there: said, not created
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "no MLflow store at sqlite:///mlflow.db" in result.output
    assert not (tmp_path / "mlflow.db").exists()


def test_batch_score_flow(
    prefect_api: None,
    champion: tuple[FlipConfig, TrainedModel],
    rows: pd.DataFrame,
    tmp_path: Path,
) -> None:
    from flows.score import batch_score

    cfg, model = champion
    rows.to_parquet(tmp_path / "raw.parquet", index=False)
    summary = batch_score(
        input_path=tmp_path / "raw.parquet",
        output_path=tmp_path / "out.parquet",
        chunk_rows=16,
        overrides=[
            f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}",
            f"mlflow.registered_model={cfg.mlflow.registered_model}",
        ],
    )
    assert summary.rows == len(rows) and summary.chunks == 3
    scored = pd.read_parquet(tmp_path / "out.parquet")
    np.testing.assert_allclose(scored[OUTPUT_COLUMN], _expected(model, rows), rtol=1e-5)
