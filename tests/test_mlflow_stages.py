"""The nightly flow's MLflow runs on a real server (tiny flow): one parent run per flow run with
the pretrain, finetune and publish runs nested under it; curves, ROC and calibration plots."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from flows.nightly_retrain import nightly_retrain
from tasks.tracking import ROLE_PARENT, TAG_FLOW_RUN, TAG_PARENT, TAG_ROLE

pytestmark = pytest.mark.usefixtures("prefect_api")


def _overrides(uri: str, experiment: str) -> list[str]:
    return [
        "training.epochs=1",
        "training.batch_size=128",
        "training.log_every_steps=1",
        "pretrain.max_rows=300",
        "finetune.max_rows=400",
        "features.max_length=96",
        f"mlflow.tracking_uri={uri}",
        f"mlflow.experiment={experiment}",
    ]


def _stage_runs(client: MlflowClient, experiment: str) -> dict[str, list[Run]]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs: dict[str, list[Run]] = {}
    for run in client.search_runs([exp.experiment_id], filter_string="tags.stage != ''"):
        runs.setdefault(run.data.tags["stage"], []).append(run)
    return runs


def _parent_runs(client: MlflowClient, experiment: str) -> list[Run]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}'",
        order_by=["attributes.start_time ASC"],
    )


def _children(client: MlflowClient, parent: Run) -> dict[str, Run]:
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{TAG_PARENT}` = '{parent.info.run_id}'",
    )
    return {r.info.run_name: r for r in runs}


def _history(client: MlflowClient, run: Run, key: str) -> list[float]:
    return [m.value for m in client.get_metric_history(run.info.run_id, key)]


def test_pretrain_and_finetune_log_runs_with_curves(
    synthetic_raw: Path, tmp_path: Path, tiny_plm_dir: Path, mlflow_server: str
) -> None:
    experiment = f"stages-{uuid.uuid4().hex[:8]}"

    def run_flow() -> None:
        nightly_retrain(
            data_root=tmp_path / "data",
            raw_dir=synthetic_raw,
            plm=str(tiny_plm_dir),
            variants=["flip"],
            overrides=_overrides(mlflow_server, experiment),
        )

    run_flow()
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    runs = _stage_runs(client, experiment)
    assert {len(v) for v in runs.values()} == {1}
    pre, fine = runs["pretrain"][0], runs["finetune-flip"][0]
    for run in (pre, fine):
        assert run.info.status == "FINISHED"
        assert run.data.tags.get("prefect.flow_run_id")
        assert "training.batch_size" in run.data.params

    for objective in ("mlm", "mtm", "icl"):
        losses = _history(client, pre, f"train/{objective}_loss")
        assert len(losses) > 1, objective
        assert all(v >= 0 for v in losses)
        accuracies = _history(client, pre, f"train/{objective}_accuracy")
        assert len(accuracies) > 1, objective
        assert all(0.0 <= v <= 1.0 for v in accuracies)
        assert len(_history(client, pre, f"valid/{objective}_loss")) >= 1

    fusion = _history(client, fine, "train/fusion_a")
    assert len(fusion) > 1
    assert all(0.0 < a < 1.0 for a in fusion)
    assert len(_history(client, fine, "train/loss")) > 1
    assert "valid/auc" in fine.data.metrics
    artifacts = {a.path for a in client.list_artifacts(fine.info.run_id, "plots")}
    assert "plots/fusion_weight.png" in artifacts
    # ROC and calibration of the selected model, from the predictions finetuning wrote.
    for split in ("valid", "test"):
        assert {f"plots/roc_{split}.png", f"plots/calibration_{split}.png"} <= artifacts
        assert 0.0 < fine.data.metrics[f"{split}_auc"] < 1.0
        assert fine.data.metrics[f"{split}_logloss"] > 0.0
        rows = fine.data.metrics[f"{split}_warm_rows"] + fine.data.metrics[f"{split}_cold_rows"]
        assert rows > 0

    # One parent run for the flow run; every stage run (and the publish run) nests under it.
    (parent,) = _parent_runs(client, experiment)
    assert parent.info.status == "FINISHED"
    assert parent.info.run_name.startswith("nightly-")
    assert parent.data.tags[TAG_FLOW_RUN] == fine.data.tags[TAG_FLOW_RUN]
    assert parent.data.tags["data_hash"] and parent.data.tags["protocol"]
    assert parent.data.metrics["flip/valid_auc"] == pytest.approx(fine.data.metrics["valid_auc"])
    children = _children(client, parent)
    assert set(children) == {"pretrain", "finetune-flip", "publish-flip"}
    assert children["finetune-flip"].info.run_id == fine.info.run_id
    assert {r.info.status for r in children.values()} == {"FINISHED"}
    publish = children["publish-flip"]
    name, version = publish.data.tags["registry.version"].split("/")
    assert client.get_model_version(name, version).run_id == publish.info.run_id

    # A rerun on unchanged data is a cache hit for both stages: no new stage runs. The new
    # flow run has its own parent run, with no children.
    run_flow()
    again = _stage_runs(client, experiment)
    assert {k: [r.info.run_id for r in v] for k, v in again.items()} == {
        "pretrain": [pre.info.run_id],
        "finetune-flip": [fine.info.run_id],
    }
    first, second = _parent_runs(client, experiment)
    assert first.info.run_id == parent.info.run_id
    assert second.info.status == "FINISHED"
    assert second.data.tags[TAG_FLOW_RUN] != parent.data.tags[TAG_FLOW_RUN]
    assert _children(client, second) == {}


def test_failed_nightly_flow_fails_its_parent_run(tmp_path: Path, mlflow_server: str) -> None:
    experiment = f"failing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nightly_retrain(
            data_root=tmp_path / "data",
            raw_dir=tmp_path / "missing",
            overrides=_overrides(mlflow_server, experiment),
        )
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    (parent,) = _parent_runs(client, experiment)
    assert parent.info.status == "FAILED"
    assert _children(client, parent) == {}
    # the run says why it failed: a tag, its description, the traceback
    error = parent.data.tags["flip.error"]
    assert error.startswith("FileNotFoundError: raw data folder") and "does not exist" in error
    assert parent.data.tags["mlflow.note.content"] == f"Failed: {error}"
    trace = client.download_artifacts(parent.info.run_id, "error.txt", str(tmp_path))
    text = Path(trace).read_text(encoding="utf-8")
    assert text.startswith("Traceback") and "prepare_raw_data" in text
