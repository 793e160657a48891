"""The nightly flow runs end to end on the stages built so far (Prefect, temporary API)."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flip_core.hashing import tree_sha256
from flows.cli import app
from flows.nightly_retrain import nightly_retrain

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


def test_nightly_flow_synthesizes_when_no_raw_folder(tmp_path: Path, tiny_plm_dir: Path):
    result = nightly_retrain(
        data_root=tmp_path / "data",
        plm=str(tiny_plm_dir),
        overrides=_small(tmp_path, "synth.users=20", "synth.movies=30"),
    )
    raw = Path(result["raw_dir"])
    assert raw.parent == tmp_path / "data" / "raw"
    assert {p.name for p in raw.iterdir()} == {"users.dat", "movies.dat", "ratings.dat"}
    assert not raw.with_name(raw.name + ".partial").exists()  # written beside, then renamed


def test_cli_run_rejects_missing_raw_folder(tmp_path: Path):
    result = CliRunner().invoke(
        app, ["run", "--data-root", str(tmp_path), "--raw-dir", str(tmp_path / "missing")]
    )
    assert result.exit_code != 0
    assert "does not exist" in str(result.exception) + result.output


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
