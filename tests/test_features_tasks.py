"""Prefect tasks `build_features` + `render_prompts`, and the `flip features` command."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect import flow
from typer.testing import CliRunner

from flip_core.config import load_config
from flip_core.data.render import read_manifest
from flows.cli import app
from tasks.features import PromptsManifest, build_features, render_prompts
from tests.features_support import ingest, ml1m_spec


@pytest.fixture(scope="module")
def data_root(synthetic_raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("features-tasks")
    ingest(synthetic_raw, root)
    return root


@pytest.mark.usefixtures("prefect_api")
def test_tasks_build_a_feature_folder(data_root: Path):
    config = load_config(None, [f"paths.data_root={data_root}", "features.protocol=ml1m-ref-9010"])

    @flow
    def features_flow() -> PromptsManifest:
        features = build_features(config, data_root / "lake" / "ml-1m")
        return render_prompts(config, features)

    prompts = features_flow()
    manifest = read_manifest(prompts.features_dir)
    assert prompts.protocol == "ml1m-ref-9010" and manifest["protocol"]["leaky"]
    assert prompts.content_hash == manifest["hashes"]["features"]
    assert {p.name for p in prompts.features_dir.iterdir()} == {
        "train.parquet", "test.parquet", "feature_map.json", "manifest.json",
    }  # fmt: skip


def test_cli_features_prints_the_manifest(data_root: Path):
    runner = CliRunner()
    result = runner.invoke(app, ["features", "--data-root", str(data_root)])
    assert result.exit_code == 0, result.output
    assert "protocol ml1m-time-811" in result.output
    assert "valid:" in result.output and "positive rate" in result.output
    assert "features (built)" in result.output
    again = runner.invoke(app, ["features", "--data-root", str(data_root)])
    assert "features (cached)" in again.output


def test_cli_features_fails_clearly(tmp_path: Path):
    runner = CliRunner()
    missing = runner.invoke(app, ["features", "--data-root", str(tmp_path)])
    assert missing.exit_code == 2
    assert "no ingested Parquet files" in missing.output
    bad = runner.invoke(app, ["features", "--data-root", str(tmp_path), "--protocol", "nope"])
    assert bad.exit_code == 2 and "has no protocol 'nope'; known: " in bad.output
    assert all(p.name in bad.output for p in ml1m_spec().protocols)
    assert runner.invoke(app, ["features", "--help"]).exit_code == 0
