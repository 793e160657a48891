"""How a training task runs its stage: in the task's own process, or under `torchrun`.

`TorchrunLaunch` is the typed choice (a flow parameter): with one process on one node (the
default) the stage runs in-process; otherwise the task starts

    python -m torch.distributed.run --nproc-per-node N [--standalone | --nnodes M
        --rdzv-backend c10d --rdzv-endpoint HOST:PORT --rdzv-id ID] -m flows.cli <stage> ...

and waits for it. The trainer joins the process group torchrun sets up (gloo on CPU, nccl on
GPU). The child gets the task's resolved config as a YAML file, writes its checkpoints where the
in-process stage would (so `--resume latest` continues either kind of run) and records its
trainer callback events (`flip_core.training.events`); the task streams the child's output into
its log, replays the events into its MLflow callback (the child never talks to MLflow), and fails
with the child's last output lines when it exits non-zero. A killed task takes its torchrun with
it (`tasks.child_process.die_with_parent`).

Several nodes: the task's node runs one torchrun; every other node must run the same command
(logged by the task, `rdzv-id` included) against shared storage, e.g. one Kubernetes job per node.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flip_core.config import FlipConfig
from flip_core.flip_stages import StageResult
from flip_core.training import TrainerCallback
from flip_core.training import distributed as ddp
from flip_core.training.checkpoint import list_checkpoints
from flip_core.training.events import StartStep, replay_events
from tasks.child_process import shim_env, stream

LAUNCH_DIR = "launch"
ERROR_LINES = 20


class TorchrunLaunch(BaseModel):
    """Processes for a training stage: `nproc_per_node` per node on `nnodes` nodes.

    One process on one node trains in the task's process. More nodes need `rdzv_endpoint`
    (`host:port` of the rendezvous, reachable from every node).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    nproc_per_node: int = Field(default=1, ge=1, description="Processes (GPUs) per node.")
    nnodes: int = Field(default=1, ge=1, description="Nodes taking part in the training.")
    rdzv_endpoint: str | None = Field(
        default=None, description="host:port of the c10d rendezvous (several nodes only)."
    )

    @model_validator(mode="after")
    def _endpoint_for_nodes(self) -> Self:
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("nnodes > 1 needs rdzv_endpoint (host:port reachable by every node)")
        return self

    @property
    def under_torchrun(self) -> bool:
        """Whether the stage runs in child processes (more than one process in total)."""
        return self.nproc_per_node * self.nnodes > 1

    def command(self, cli_args: Sequence[str], rdzv_id: str) -> list[str]:
        """The torchrun command line running `python -m flows.cli <cli_args>`."""
        cmd = [sys.executable, "-m", "torch.distributed.run"]
        cmd += ["--nproc-per-node", str(self.nproc_per_node), "--tee", "3"]
        if self.nnodes == 1:
            cmd += ["--standalone"]
        else:
            cmd += ["--nnodes", str(self.nnodes), "--rdzv-backend", "c10d"]
            cmd += ["--rdzv-endpoint", str(self.rdzv_endpoint), "--rdzv-id", rdzv_id]
        return [*cmd, "-m", "flows.cli", *cli_args]


@dataclass
class StageOutcome:
    """What a training task reports, however the stage ran."""

    model_dir: Path
    metrics: dict[str, float]
    global_step: int
    world_size: int
    start_step: int


class TrainedModel(BaseModel):
    """What a training task returns: the model folder, its content hash, its metrics, the steps
    taken and the processes that took them."""

    model_dir: Path
    content_hash: str
    metrics: dict[str, float]
    global_step: int = 0
    world_size: int = 1


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Only errors from transformers' logger while a stage runs: its weight-load report (the
    pretrained encoder's unused pooler, the new heads) is expected, not news, in a task log."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


class StageLaunchError(RuntimeError):
    """The stage's torchrun exited non-zero (the message ends with its last output lines)."""


def train_stage(
    stage: str,
    config: FlipConfig,
    output_dir: Path,
    in_process: Callable[[list[TrainerCallback], str | None], StageResult],
    cli_args: Sequence[str],
    callbacks: Sequence[TrainerCallback],
    launch: TorchrunLaunch | None,
    log: Callable[[str], None],
) -> StageOutcome:
    """Run `stage` in-process (`in_process(callbacks, resume)`) or under torchrun (`flows.cli
    <cli_args>` plus config/out/resume options); resume from the latest checkpoint if any."""
    resume = "latest" if list_checkpoints(output_dir / "checkpoints") else None
    start = StartStep(announce=lambda text: log(f"{stage}: {text}"))
    if launch is None or not launch.under_torchrun:
        with quiet_transformers():
            result = in_process([*callbacks, start], resume)
        return StageOutcome(
            result.model_dir, result.metrics, result.train.global_step, ddp.world_size(), start.step
        )
    everyone = [*callbacks, start]
    return _under_torchrun(stage, config, output_dir, cli_args, resume, everyone, launch, log)


def _under_torchrun(
    stage: str,
    config: FlipConfig,
    output_dir: Path,
    cli_args: Sequence[str],
    resume: str | None,
    callbacks: Sequence[TrainerCallback],
    launch: TorchrunLaunch,
    log: Callable[[str], None],
) -> StageOutcome:
    folder = output_dir / LAUNCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "config.yaml"
    summary, events = folder / "summary.json", folder / "events.jsonl"
    config_file.write_text(config.to_yaml(), encoding="utf-8")
    summary.unlink(missing_ok=True)
    events.unlink(missing_ok=True)
    args = [
        *cli_args,
        "--config", str(config_file),
        "--set", "training.progress=false",  # no progress bar in a log
        "--out", str(output_dir),
        "--summary", str(summary),
        "--events", str(events),
        *(["--resume", resume] if resume else []),
    ]  # fmt: skip
    cmd = launch.command(args, rdzv_id=f"{stage}-{output_dir.name}")
    log(f"{stage}: launching {shlex.join(cmd)}")
    env = shim_env({**os.environ, "PYTHONUNBUFFERED": "1", "TRANSFORMERS_VERBOSITY": "error"})
    workers: deque[str] = deque(maxlen=ERROR_LINES)

    def forward(line: str) -> None:
        if line.startswith("[default"):  # a rank's own output (torchrun --tee)
            workers.append(line)
        log(f"[torchrun] {line}")

    code, tail = stream(cmd, forward, tail_lines=ERROR_LINES, cwd=Path.cwd(), env=env)
    replay_events(events, callbacks)  # what the child did, even when it failed
    if code != 0:
        raise StageLaunchError(
            f"{stage} under torchrun exited with code {code}; last lines of the processes:\n"
            + "\n".join(workers or tail)
        )
    data = json.loads(summary.read_text(encoding="utf-8"))
    return StageOutcome(
        model_dir=Path(data["model_dir"]),
        metrics={k: float(v) for k, v in data["metrics"].items()},
        global_step=int(data["global_step"]),
        world_size=int(data["world_size"]),
        start_step=int(data["start_step"]),
    )
