"""Run lifecycle and logging against a real `mlflow server` (sqlite, local artifacts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from flip_core.config import FlipConfig, load_config
from flip_core.model_card import ModelCardInfo
from flip_core.training.callbacks import TrainerState
from tasks import tracking

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO_ROOT = Path(__file__).resolve().parent.parent


def _config(uri: str, experiment: str | None = None) -> FlipConfig:
    name = experiment or f"test-{uuid.uuid4().hex[:8]}"
    return load_config(overrides=[f"mlflow.tracking_uri={uri}", f"mlflow.experiment={name}"])


def _owner_script(uri: str, experiment: str, behaviour: str) -> str:
    return textwrap.dedent(
        f"""
        import sys, time
        from flip_core.config import load_config
        from tasks.tracking import tracked_run
        cfg = load_config(overrides=["mlflow.tracking_uri={uri}", "mlflow.experiment={experiment}"])
        with tracked_run(cfg, "train", flow_run_id="flow-{behaviour}") as run:
            print(run.run_id, flush=True)
            if "{behaviour}" == "fail":
                raise RuntimeError("boom")
            time.sleep(600)
        """
    )


def _start_owner(uri: str, experiment: str, behaviour: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _owner_script(uri, experiment, behaviour)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read() if proc.stderr else "no output"
    return proc, run_id


def test_sigkilled_owner_leaves_no_running_run_after_next_start(mlflow_server: str) -> None:
    cfg = _config(mlflow_server)
    proc, run_id = _start_owner(mlflow_server, cfg.mlflow.experiment, "sleep")
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    assert client.get_run(run_id).info.status == "RUNNING"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)

    with tracking.tracked_run(cfg, "next") as nxt:
        killed = client.get_run(run_id)
        assert killed.info.status == "KILLED"
        assert "gone" in killed.data.tags[tracking.TAG_REPAIRED]
        assert client.get_run(nxt.run_id).info.status == "RUNNING"
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    assert experiment is not None
    running = client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    assert running == []


def test_sigterm_marks_killed_and_exception_marks_failed(mlflow_server: str) -> None:
    cfg = _config(mlflow_server)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    proc, run_id = _start_owner(mlflow_server, cfg.mlflow.experiment, "sleep")
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    killed = client.get_run(run_id)
    assert killed.info.status == "KILLED"
    assert killed.data.tags[tracking.TAG_ERROR] == f"RunTerminated: signal {int(signal.SIGTERM)}"

    proc, run_id = _start_owner(mlflow_server, cfg.mlflow.experiment, "fail")
    proc.wait(timeout=60)
    assert proc.returncode != 0
    failed = client.get_run(run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags[tracking.TAG_ERROR] == "RuntimeError: boom"


def test_retried_flow_resumes_its_run(mlflow_server: str) -> None:
    cfg = _config(mlflow_server)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    with pytest.raises(RuntimeError), tracking.tracked_run(cfg, "finetune", "flow-42") as first:
        first.log_metrics({"valid/auc": 0.6}, step=1)
        raise RuntimeError("transient")
    failed = client.get_run(first.run_id)
    assert failed.info.status == "FAILED"
    assert failed.data.tags[tracking.TAG_ERROR] == "RuntimeError: transient"
    assert failed.data.tags["mlflow.note.content"] == "Failed: RuntimeError: transient"
    with tracking.tracked_run(cfg, "finetune", "flow-42") as second:
        second.log_metrics({"valid/auc": 0.7}, step=2)
    with tracking.tracked_run(cfg, "finetune", "flow-43") as other:
        pass
    assert second.resumed and second.run_id == first.run_id
    assert other.run_id != first.run_id
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tracking.TAG_FLOW_RUN] == "flow-42"
    assert run.data.tags[tracking.TAG_ATTEMPTS] == "2"
    assert tracking.TAG_ERROR not in run.data.tags  # finished now: the error is history
    assert run.data.tags[tracking.TAG_PREVIOUS_ERROR] == "RuntimeError: transient"
    history = client.get_metric_history(first.run_id, "valid/auc")
    assert [(m.step, m.value) for m in history] == [(1, 0.6), (2, 0.7)]


def test_resume_key_keeps_several_trainings_of_a_stage_apart(mlflow_server: str) -> None:
    """One flow run training a stage per seed: each output folder has its own run, and a retry
    of one resumes that one only."""
    cfg = _config(mlflow_server)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    runs = {}
    for seed in ("0", "1"):
        with tracking.tracked_run(cfg, "finetune-flip", "flow-7", resume_key=f"/w/{seed}") as run:
            runs[seed] = run.run_id
    with tracking.tracked_run(cfg, "finetune-flip", "flow-7", resume_key="/w/1") as again:
        pass
    assert runs["0"] != runs["1"]
    assert again.resumed and again.run_id == runs["1"]
    assert client.get_run(runs["1"]).data.tags[tracking.TAG_ATTEMPTS] == "2"
    assert client.get_run(runs["0"]).data.tags[tracking.TAG_ATTEMPTS] == "1"


def test_logs_config_system_manifest_plots_card_and_callback(
    mlflow_server: str, tmp_path: Path
) -> None:
    cfg = _config(mlflow_server)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    probs = np.clip(0.3 * labels + rng.uniform(0, 0.7, 500), 0, 1)
    with tracking.tracked_run(cfg, "evaluate", "flow-log") as run:
        tracking.log_config(run, cfg)
        tracking.log_system_info(run)
        tracking.log_manifest(run, {"data_hash": "abc123", "rows": 500})
        flip_like = SimpleNamespace(mix_weight=torch.tensor(0.5))
        callback = tracking.MLflowCallback(run, model=flip_like)
        for step in range(1, 4):
            state = TrainerState(step=step, epoch=step)
            flip_like.mix_weight = torch.tensor(0.5 + step / 20)
            callback.on_step(state, {"loss": 1.0 / step, "mlm_loss": 2.0 / step})
            callback.on_eval(state, {"valid_loss": 1.5 / step, "valid_auc": 0.5 + step / 10})
        metrics = tracking.log_evaluation(run, "valid", labels, probs)
        plots = tracking.log_training_curves(run)
        card = tracking.log_model_card(
            run,
            ModelCardInfo("flip-ctr", "flip_id", "ml1m-time-811", "abc123", "dev", metrics),
        )
    data = client.get_run(run.run_id).data
    assert data.params["training.batch_size"] == str(cfg.training.batch_size)
    assert data.params["id_model.hidden_units"] == "[256, 128]"
    assert data.tags["sys.torch"] and data.tags["data.data_hash"] == "abc123"
    assert metrics["valid_auc"] > 0.7 and data.metrics["valid_auc"] == metrics["valid_auc"]
    assert data.metrics["valid/auc"] == pytest.approx(0.8)
    assert "valid_auc" in card and "ml1m-time-811" in card
    assert {"plots/curve_loss.png", "plots/fusion_weight.png"} <= set(plots)
    fusion = client.get_metric_history(run.run_id, "train/fusion_a")
    assert [round(m.value, 4) for m in fusion] == [0.55, 0.6, 0.65]
    files = {f.path for f in client.list_artifacts(run.run_id, "plots")}
    assert {"plots/roc_valid.png", "plots/calibration_valid.png", "plots/curve_auc.png"} <= files
    assert {f.path for f in client.list_artifacts(run.run_id)} >= {
        "config.yaml", "system.json", "model_card.md", "manifests", "plots"
    }  # fmt: skip
    local = client.download_artifacts(run.run_id, "config.yaml", str(tmp_path))
    assert load_config(local) == cfg


def test_retried_prefect_flow_resumes_its_run(prefect_api: None, mlflow_server: str) -> None:
    from prefect import flow

    cfg = _config(mlflow_server)
    attempts: list[str] = []

    @flow(name="flaky-training", retries=1, retry_delay_seconds=0)
    def flaky() -> str:
        with tracking.tracked_run(cfg, "train") as run:  # flow-run id read from Prefect
            attempts.append(run.run_id)
            if len(attempts) == 1:
                raise RuntimeError("transient failure")
            return run.run_id

    run_id = flaky()
    assert attempts == [run_id, run_id]
    run = MlflowClient(mlflow_server, registry_uri=mlflow_server).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert len(run.data.tags[tracking.TAG_FLOW_RUN]) == 36  # a Prefect flow-run UUID
    assert run.data.tags[tracking.TAG_ATTEMPTS] == "2"
    assert tracking.TAG_ERROR not in run.data.tags  # finished now: the error is history
    assert run.data.tags[tracking.TAG_PREVIOUS_ERROR] == "RuntimeError: transient failure"


def test_flow_parent_run_nests_children_fails_and_resumes_on_retry(
    prefect_api: None, mlflow_server: str
) -> None:
    """A flow's parent run: stage runs nest under it; a failed attempt leaves it FAILED; the
    retry resumes it and its children; it ends FINISHED."""
    from prefect import flow

    cfg = _config(mlflow_server)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    statuses: list[list[str]] = []
    parents: list[str] = []

    @flow(name="parent-child", retries=1, retry_delay_seconds=0)
    def nightly() -> tuple[str, str]:
        _, experiment_id = tracking.configure(cfg.mlflow)
        statuses.append(sorted(r.info.status for r in client.search_runs([experiment_id])))
        with tracking.flow_parent_run(cfg, "nightly", {"data_hash": "h1"}) as parent:
            parents.append(parent.run_id)
            with tracking.tracked_run(cfg, "pretrain") as child:
                if len(parents) == 1:
                    raise RuntimeError("transient failure")
            return parent.run_id, child.run_id

    parent_id, child_id = nightly()
    assert statuses == [[], ["FAILED", "FAILED"]]  # the first attempt failed parent and child
    assert parents == [parent_id, parent_id]
    parent = client.get_run(parent_id)
    child = client.get_run(child_id)
    assert parent.info.status == "FINISHED" and child.info.status == "FINISHED"
    assert parent.info.run_name.startswith("nightly-")
    assert parent.data.tags[tracking.TAG_ROLE] == tracking.ROLE_PARENT
    assert parent.data.tags["data_hash"] == "h1"
    assert parent.data.tags[tracking.TAG_ATTEMPTS] == "2"
    assert tracking.TAG_PARENT not in parent.data.tags
    assert parent.data.params["training.batch_size"] == str(cfg.training.batch_size)
    assert child.data.tags[tracking.TAG_PARENT] == parent_id
    assert child.data.tags[tracking.TAG_ATTEMPTS] == "2"  # the retry resumed the child too
    flow_run = parent.data.tags[tracking.TAG_FLOW_RUN]
    assert child.data.tags[tracking.TAG_FLOW_RUN] == flow_run
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
    assert experiment is not None
    assert len(client.search_runs([experiment.experiment_id])) == 2


def test_flow_parent_run_fails_with_its_flow(prefect_api: None, mlflow_server: str) -> None:
    from prefect import flow

    cfg = _config(mlflow_server)
    client = MlflowClient(mlflow_server, registry_uri=mlflow_server)
    opened: list[str] = []

    @flow(name="failing-parent")
    def failing() -> None:
        with tracking.flow_parent_run(cfg, "nightly") as parent:
            opened.append(parent.run_id)
            raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        failing()
    assert client.get_run(opened[0]).info.status == "FAILED"
