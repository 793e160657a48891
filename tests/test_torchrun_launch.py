"""Training tasks under torchrun: the flow parameter, the child process plumbing, a real run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from pydantic import ValidationError

from flip_core.training import TrainerCallback, TrainerState
from flip_core.training.events import EventRecorder, StartStep, read_events, replay_events
from flows.nightly_retrain import nightly_retrain
from tasks.child_process import die_with_parent, shim_env, stream
from tasks.launch import StageLaunchError, TorchrunLaunch, train_stage

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_launch_parameters_and_command():
    assert not TorchrunLaunch().under_torchrun
    local = TorchrunLaunch(nproc_per_node=2)
    assert local.under_torchrun
    cmd = local.command(["pretrain", "--features", "f"], rdzv_id="x")
    assert cmd[1:] == [
        "-m", "torch.distributed.run", "--nproc-per-node", "2", "--tee", "3", "--standalone",
        "-m", "tasks.stage_child", "pretrain", "--features", "f",
    ]  # fmt: skip
    nodes = TorchrunLaunch(nproc_per_node=4, nnodes=2, rdzv_endpoint="head:29400")
    cmd = nodes.command(["finetune"], rdzv_id="finetune-abc")
    assert "--standalone" not in cmd
    joined = " ".join(cmd)
    assert (
        "--nnodes 2 --rdzv-backend c10d --rdzv-endpoint head:29400 --rdzv-id finetune-abc" in joined
    )
    with pytest.raises(ValidationError, match="needs rdzv_endpoint"):
        TorchrunLaunch(nnodes=2)
    with pytest.raises(ValidationError):
        TorchrunLaunch(nproc_per_node=0)


class _Collect(TrainerCallback):
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, dict[str, float]]] = []

    def on_train_begin(self, state: TrainerState) -> None:
        self.calls.append(("begin", state.step, {}))

    def on_step(self, state: TrainerState, logs: dict[str, float]) -> None:
        self.calls.append(("step", state.step, logs))

    def on_eval(self, state: TrainerState, metrics: dict[str, float]) -> None:
        self.calls.append(("eval", state.step, metrics))


def test_events_are_recorded_and_replayed(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    recorder = EventRecorder(path)
    state = TrainerState(step=4, epoch=1)
    recorder.on_train_begin(state)
    state.step = 5
    recorder.on_step(state, {"loss": 0.5})
    recorder.on_step(state, {})  # not a log step: nothing recorded
    recorder.on_eval(state, {"valid_auc": 0.7})
    recorder.on_step(TrainerState(step=6, is_main=False), {"loss": 0.1})  # other ranks: silent
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"hook": "on_st')  # a killed child's unfinished line
    assert len(read_events(path)) == 3
    collect, start = _Collect(), StartStep()
    assert replay_events(path, [collect, start]) == 3
    assert collect.calls == [
        ("begin", 4, {}),
        ("step", 5, {"loss": 0.5}),
        ("eval", 5, {"valid_auc": 0.7}),
    ]
    assert start.step == 4


def test_stream_passes_lines_and_returns_the_tail():
    lines: list[str] = []
    script = "import sys\nfor i in range(50): print(i)\nsys.exit('boom: bad input')"
    code, tail = stream([sys.executable, "-c", script], lines.append, tail_lines=5, env=shim_env())
    assert code == 1
    assert lines[:3] == ["0", "1", "2"]
    assert tail == ["46", "47", "48", "49", "boom: bad input"]


_PARENT = """
import subprocess, sys, time
from tasks.child_process import die_with_parent, shim_env
child = subprocess.Popen(die_with_parent([sys.executable, "-c", "import time; time.sleep(120)"]),
                         env=shim_env())
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_child_dies_with_its_killed_parent():
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT],
        cwd=REPO_ROOT,
        env=shim_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        time.sleep(1.0)  # the shim has exec'd the sleeper by now
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        parent.kill()
        if _alive(child):
            os.kill(child, signal.SIGKILL)
    assert die_with_parent(["x"])[-1] == "x"


def _alive(pid: int) -> bool:
    """Alive and not a zombie (an orphan is reaped by init, a zombie of ours is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_failing_torchrun_stage_fails_the_task_with_its_last_lines(tmp_path: Path):
    from flip_core.config import load_config

    config = load_config(None, [f"paths.data_root={tmp_path}"])
    logged: list[str] = []
    # Either rank may fail first; torchrun then stops the other, which may print nothing.
    with pytest.raises(StageLaunchError, match=r"\[default[01]\]:.*not a built feature folder"):
        train_stage(
            "pretrain",
            config,
            tmp_path / "work",
            lambda callbacks, resume: pytest.fail("must not run in-process"),
            ["pretrain", "--features", str(tmp_path / "missing")],
            [],
            TorchrunLaunch(nproc_per_node=2),
            logged.append,
        )
    assert any(line.startswith("[torchrun] ") for line in logged)
    saved = (tmp_path / "work" / "launch" / "config.yaml").read_text()
    assert str(tmp_path) in saved  # the child got the task's resolved config


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_nightly_flow_trains_with_two_processes(tmp_path: Path, tiny_plm_dir: Path):
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    result = nightly_retrain(
        data_root=tmp_path / "data",
        plm=str(tiny_plm_dir),
        variants=["flip_id"],
        nproc_per_node=2,
        overrides=[
            "synth.enabled=true",
            "paths.dataset=configs/datasets/synth-ml-1m.yaml",
            "synth.users=40",
            "synth.items=30",
            "synth.events_per_user=20",
            "training.epochs=1",
            "training.batch_size=64",
            "training.num_threads=1",
            "pretrain.max_rows=128",
            "features.max_length=96",
            f"mlflow.tracking_uri={tracking}",
        ],
    )
    assert result["pretrain_world_size"] == 2
    assert result["finetune_world_size"] == {"flip_id": 2}
    assert result["models"] == {"1": "champion"}
    work = tmp_path / "data" / "work" / "finetune"
    (summary_file,) = work.glob("*/launch/summary.json")
    summary = json.loads(summary_file.read_text())
    assert summary["world_size"] == 2 and summary["global_step"] > 0
    # The MLflow runs of the stages exist and hold the children's replayed metrics.
    client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = {r.info.run_name: r for r in client.search_runs(experiments)}
    for name in ("pretrain", "finetune-flip_id"):
        run = runs[name]
        assert run.info.status == "FINISHED"
        assert run.data.tags["flip.world_size"] == "2"
        assert "train/loss" in run.data.metrics, sorted(run.data.metrics)
    assert "valid/auc" in runs["finetune-flip_id"].data.metrics
