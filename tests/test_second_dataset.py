"""A second dataset shape end to end: the synthetic app-usage log (configs/datasets/synth-apps.yaml)
through the nightly flow (ingest -> features -> pretrain -> finetune -> registered champion), then
`flip score` and `mlflow models serve` on raw rows of that schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flip_core.data.synth_apps import write_synthetic_apps
from flip_core.scoring import RawRowScorer
from flip_core.spec import load_dataset_spec, resolve_spec_path
from flows.cli import app
from flows.nightly_retrain import nightly_retrain
from tasks.pyfunc import OUTPUT_COLUMN
from tests.mlflow_server import MLFLOW_BIN, free_port, stop_group, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]
SPEC = resolve_spec_path("configs/datasets/synth-apps.yaml")


@pytest.fixture(scope="module")
def apps_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("apps-raw")
    write_synthetic_apps(out, users=120, apps=60, events_per_user=25, seed=3)
    return out


@pytest.fixture(scope="module")
def champion(
    apps_raw: Path, mlflow_server: str, tiny_plm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, dict[str, object]]:
    """Run the nightly flow on the apps log; returns (tracking URI, registered model, summary)."""
    name = f"apps-{uuid.uuid4().hex[:8]}"
    result = nightly_retrain(
        dataset=SPEC,
        data_root=tmp_path_factory.mktemp("apps-data"),
        raw_dir=apps_raw,
        plm=str(tiny_plm_dir),
        overrides=[
            "training.epochs=1",
            "training.batch_size=128",
            "pretrain.max_rows=200",
            "features.max_length=96",
            f"mlflow.tracking_uri={mlflow_server}",
            f"mlflow.experiment={name}",
            f"mlflow.registered_model={name}",
        ],
    )
    return mlflow_server, name, result


def champion_dir(uri: str, name: str) -> Path:
    """The saved model directory inside the champion's pyfunc, downloaded."""
    mlflow.set_tracking_uri(uri)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}@champion"))
    (feature_map,) = (local / "artifacts").rglob("feature_map.json")
    return feature_map.parent


def raw_rows(raw: Path, n: int = 30) -> pd.DataFrame:
    """Raw rows of the apps schema (events joined with users and apps), some never seen."""
    types = {"app_key": str, "country": str, "plan": str, "category": str, "tags": str}
    events = pd.read_csv(raw / "events.csv", dtype=types)
    users = pd.read_csv(raw / "users.csv", dtype=types)
    apps = pd.read_csv(raw / "apps.csv", dtype=types)
    rows = events.merge(users, on="user_key").merge(apps, on="app_key").tail(n)
    rows = rows.reset_index(drop=True)
    rows.loc[:3, "user_key"] = np.arange(9_000_001, 9_000_005)  # unseen users
    rows.loc[2:5, "category"] = "never-seen-category"
    return rows


def test_the_flow_registers_an_apps_champion_tagged_with_its_dataset(
    champion: tuple[str, str, dict[str, object]],
) -> None:
    uri, name, result = champion
    assert result["models"] == {"1": "champion"}
    lake_rows = result["lake_rows"]
    assert isinstance(lake_rows, dict) and (lake_rows["users"], lake_rows["apps"]) == (120, 60)
    client = MlflowClient(uri, registry_uri=uri)
    version = client.get_model_version_by_alias(name, "champion")
    assert version.tags["protocol"] == "apps-time-811"
    fmap = json.loads((champion_dir(uri, name) / "feature_map.json").read_text(encoding="utf-8"))
    assert fmap["dataset"] == "synth-apps"
    assert list(fmap["columns"]) == list(load_dataset_spec(SPEC).input_columns())


def test_flip_score_scores_raw_apps_rows_and_names_a_missing_column(
    champion: tuple[str, str, dict[str, object]], apps_raw: Path, tmp_path: Path
) -> None:
    uri, name, _ = champion
    rows = raw_rows(apps_raw)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    runner = CliRunner()
    args = ["score", "--model", f"models:/{name}@champion", "--set", f"mlflow.tracking_uri={uri}"]
    out = tmp_path / "scores.parquet"
    ok = runner.invoke(app, [*args, "--input", str(tmp_path / "rows.csv"), "--output", str(out)])
    assert ok.exit_code == 0, ok.output
    scored = pd.read_parquet(out)
    assert list(scored.columns) == ["user_key", "app_key", OUTPUT_COLUMN]  # the id columns
    assert len(scored) == len(rows) and scored[OUTPUT_COLUMN].between(0, 1).all()
    rows.drop(columns=["plan"]).to_csv(tmp_path / "no_plan.csv", index=False)
    bad = runner.invoke(
        app, [*args, "--input", str(tmp_path / "no_plan.csv"), "--output", str(tmp_path / "x.pq")]
    )
    assert bad.exit_code == 2 and "plan" in bad.output
    assert not (tmp_path / "x.pq").exists()


@pytest.fixture
def served(champion: tuple[str, str, dict[str, object]], tmp_path: Path) -> Iterator[str]:
    uri, name, _ = champion
    port = free_port()
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": path}
    cmd = [
        str(MLFLOW_BIN), "models", "serve", "-m", f"models:/{name}@champion",
        "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/ping", 240, proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_group(proc)


def test_models_serve_scores_raw_apps_rows_like_the_saved_model(
    served: str, champion: tuple[str, str, dict[str, object]], apps_raw: Path
) -> None:
    uri, name, _ = champion
    rows = raw_rows(apps_raw)
    records = json.loads(rows.to_json(orient="records"))
    request = urllib.request.Request(
        f"{served}/invocations",
        data=json.dumps({"dataframe_records": records}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as resp:
        body = json.loads(resp.read())
    probs = np.array([p[OUTPUT_COLUMN] for p in body["predictions"]])
    expected = RawRowScorer.from_pretrained(champion_dir(uri, name)).predict_proba(rows)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    assert len(set(np.round(probs, 6))) > 1  # the rows are told apart
