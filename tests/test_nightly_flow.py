"""The nightly flow runs end to end on the stages built so far (Prefect, temporary API)."""

from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flip_core.hashing import tree_sha256
from flows.cli import app
from flows.nightly_retrain import nightly_retrain
from tasks.raw_data import NoRawDataError

pytestmark = pytest.mark.usefixtures("prefect_api")


def _small(tmp_path: Path, *extra: str) -> list[str]:
    """Keep every stage tiny; MLflow in the test's folder."""
    return [
        "training.epochs=1",
        "training.batch_size=128",
        "pretrain.max_rows=200",
        "features.max_length=96",
        f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        *extra,
    ]


def test_nightly_flow_on_given_raw_folder(synthetic_raw: Path, tmp_path: Path, tiny_plm_dir: Path):
    result = nightly_retrain(
        data_root=tmp_path / "data",
        raw_dir=synthetic_raw,
        plm=str(tiny_plm_dir),
        overrides=_small(tmp_path),
    )
    assert result["raw_dir"] == str(synthetic_raw)
    assert result["raw_hash"] == tree_sha256(synthetic_raw)
    assert result["models"] == {"1": "champion"}
    assert result["dataset"] == "ml-1m"
    # another model on the same data: the gate rescores the champion on the current rows
    again = nightly_retrain(
        data_root=tmp_path / "data",
        raw_dir=synthetic_raw,
        plm=str(tiny_plm_dir),
        overrides=_small(tmp_path, "training.seed=1"),
    )
    assert set(again["models"]) == {"2"}
    reason = again["gate"]["2"]
    assert "champion v1" in reason and "champion on current rows" in reason, reason
    assert "both rescored on the current rows of " + str(tmp_path / "data") in reason, reason


SYNTH_SPEC = "configs/datasets/synth-ml-1m.yaml"


def test_flip_run_synthetic_is_its_own_dataset_in_the_env_tracking_store(
    tmp_path: Path, tiny_plm_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    store = f"sqlite:///{tmp_path}/env-store.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # flip run reads it; no --set names MLflow
    small = [s for s in _small(tmp_path) if not s.startswith("mlflow.")]
    args = ["run", "--synthetic", "--dataset", SYNTH_SPEC, "--data-root", str(tmp_path / "data")]
    for override in [*small, f"plm.name={tiny_plm_dir}", "synth.users=20", "synth.items=30"]:
        args += ["--set", override]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "dataset: synth-ml-1m" in result.output
    raw = tmp_path / "data" / "raw"
    (folder,) = raw.iterdir()  # written beside, then renamed: no .partial left
    assert folder.name.startswith("synth-ml-1m-synthetic-")
    assert {p.name for p in folder.iterdir()} == {"users.dat", "movies.dat", "ratings.dat"}
    assert (tmp_path / "data" / "lake" / "synth-ml-1m").is_dir()
    assert not (tmp_path / "data" / "lake" / "ml-1m").exists()
    client = MlflowClient(store)
    assert client.get_registered_model("flip-ctr").tags["dataset"] == "synth-ml-1m"
    version = client.get_model_version("flip-ctr", "1")
    assert version.tags["dataset"] == "synth-ml-1m"
    assert version.tags["protocol"] == "ml1m-time-811"
    assert len(version.tags["dataset_spec_hash"]) == 64
    assert "Trained on synthetic data" in (version.description or "")
    assert not (tmp_path / "mlflow.db").exists()


def test_nightly_flow_without_raw_data_fails_and_writes_nothing(tmp_path: Path):
    with pytest.raises(NoRawDataError, match="no raw data: this run has no raw_dir"):
        nightly_retrain(data_root=tmp_path / "data", overrides=_small(tmp_path))
    assert not (tmp_path / "data" / "raw").exists()
    assert not (tmp_path / "data" / "lake").exists()


def test_synthetic_data_is_never_a_real_dataset(tmp_path: Path):
    """Synthetic data asked for with a real dataset's spec (ml-1m) fails before anything runs."""
    result = CliRunner().invoke(app, ["run", "--synthetic", "--data-root", str(tmp_path)])
    assert result.exit_code == 2
    assert "synthetic data is its own dataset, never 'ml-1m'" in result.output
    with pytest.raises(NoRawDataError, match="never 'ml-1m'"):
        nightly_retrain(data_root=tmp_path / "data", synthetic=True, overrides=_small(tmp_path))
    assert not (tmp_path / "data" / "raw").exists()


def test_cli_run_rejects_missing_raw_folder(tmp_path: Path):
    result = CliRunner().invoke(
        app, ["run", "--data-root", str(tmp_path), "--raw-dir", str(tmp_path / "missing")]
    )
    assert result.exit_code != 0
    assert "does not exist" in str(result.exception) + result.output


def test_cli_run_needs_raw_data_or_synthetic(tmp_path: Path):
    result = CliRunner().invoke(app, ["run", "--data-root", str(tmp_path)])
    assert result.exit_code == 2
    assert "no raw data" in result.output and "--synthetic" in result.output
    both = ["run", "--synthetic", "--set", f"paths.raw_dir={tmp_path}"]
    result = CliRunner().invoke(app, both)
    assert result.exit_code == 2
    assert "choose real data (raw_dir) or synthetic data" in result.output
    assert not (tmp_path / "lake").exists()


def test_every_command_has_help():
    runner = CliRunner()
    for args in (
        [],
        ["config"],
        ["config", "show"],
        ["data"],
        ["data", "synth"],
        ["run"],
    ):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output
