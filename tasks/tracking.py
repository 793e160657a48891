"""MLflow experiment tracking: run lifecycle, params, metrics, system info, plots, model card.

Everything goes through `MlflowClient` with an explicit run id (Prefect runs tasks in worker
threads; MLflow's fluent "active run" is per thread). A run records the pid, host and process
start time of its owner; at every start, RUNNING runs whose owner is gone are marked KILLED, so a
SIGKILLed process never leaves a run RUNNING for long. A retried flow (same Prefect flow-run id
and run name) resumes its run instead of opening a new one. A flow opens one parent run
(`flow_parent_run`); every run opened later under the same flow-run id is created as its child
(tag `mlflow.parentRunId`, shown as a tree in the MLflow UI). A run that fails (or is killed)
carries the error: tag `flip.error`, its description, and `error.txt` with the traceback.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import mlflow
import numpy as np
import pyarrow.parquet as pq
import torch
from mlflow.entities import Run, RunStatus
from mlflow.tracking import MlflowClient

from flip_core import plots
from flip_core.config import FlipConfig, MLflowConfig
from flip_core.metrics import split_metrics
from flip_core.model_card import ModelCardInfo, render_model_card
from flip_core.training.callbacks import TrainerCallback, TrainerState

TAG_FLOW_RUN = "prefect.flow_run_id"
TAG_PID = "flip.pid"
TAG_HOST = "flip.host"
TAG_PROC_START = "flip.proc_start"
TAG_ATTEMPTS = "flip.attempts"
TAG_REPAIRED = "flip.repaired"
TAG_ROLE = "flip.role"
TAG_RESUME_KEY = "flip.resume_key"
TAG_PARENT = "mlflow.parentRunId"
TAG_ERROR = "flip.error"
TAG_PREVIOUS_ERROR = "flip.previous_error"
ROLE_PARENT = "flow-parent"
EVALUATION_SPLITS = ("valid", "test")
REPO_ROOT = Path(__file__).resolve().parent.parent
_MAX_PARAM_LEN = 6000


class RunTerminated(BaseException):
    """Raised in the main thread on SIGTERM so the run can be closed as KILLED."""


def configure(config: MLflowConfig) -> tuple[MlflowClient, str]:
    """Client for the configured tracking URI and the experiment id (created if missing).

    The registry is the tracking store too, set explicitly: a registry URI left over from an
    earlier configuration in the same process must not receive this run's model versions.
    """
    mlflow.set_tracking_uri(config.tracking_uri)
    mlflow.set_registry_uri(config.tracking_uri)
    client = MlflowClient(tracking_uri=config.tracking_uri, registry_uri=config.tracking_uri)
    experiment = client.get_experiment_by_name(config.experiment)
    if experiment is not None:
        return client, experiment.experiment_id
    return client, client.create_experiment(config.experiment)


def current_flow_run_id() -> str | None:
    """The Prefect flow-run id when called inside a flow or task, else None."""
    try:
        from prefect.runtime import flow_run
    except ImportError:  # pragma: no cover - prefect is a dependency
        return None
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def process_start_time(pid: int) -> str | None:
    """Kernel start time of `pid` (clock ticks since boot, Linux), to tell reused pids apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_alive(pid: int, start_time: str | None) -> bool:
    """Whether the process that owned a run is still running (same pid and start time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now_start = process_start_time(pid)
    return start_time is None or now_start is None or now_start == start_time


def stale_reason(run: Run, stale_after_hours: float, now_ms: int | None = None) -> str | None:
    """Why a RUNNING run is abandoned, or None when its owner may still be working on it."""
    tags = run.data.tags
    host, pid = tags.get(TAG_HOST), tags.get(TAG_PID)
    if host == socket.gethostname() and pid is not None and pid.isdigit():
        if not owner_alive(int(pid), tags.get(TAG_PROC_START)):
            return f"owner process {pid} on {host} is gone"
        return None
    age_h = ((now_ms or int(time.time() * 1000)) - run.info.start_time) / 3.6e6
    if age_h > stale_after_hours:
        return f"RUNNING for {age_h:.1f} h (> {stale_after_hours} h) with an owner we cannot check"
    return None


def repair_stale_runs(
    client: MlflowClient, experiment_id: str, stale_after_hours: float
) -> list[str]:
    """Mark abandoned RUNNING runs KILLED (with a tag saying why); returns their ids."""
    repaired = []
    running = client.search_runs(
        [experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000
    )
    for run in running:
        reason = stale_reason(run, stale_after_hours)
        if reason is None:
            continue
        client.set_tag(run.info.run_id, TAG_REPAIRED, f"marked KILLED at next start: {reason}")
        client.set_terminated(run.info.run_id, status="KILLED")
        repaired.append(run.info.run_id)
    return repaired


def _resumable_run(
    client: MlflowClient,
    experiment_id: str,
    flow_run_id: str,
    run_name: str,
    resume_key: str | None = None,
) -> Run | None:
    same_key = f" and tags.`{TAG_RESUME_KEY}` = '{_quote(resume_key)}'" if resume_key else ""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_FLOW_RUN}` = '{_quote(flow_run_id)}' "
        f"and tags.`mlflow.runName` = '{_quote(run_name)}'" + same_key,
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def flow_parent_run_id(client: MlflowClient, experiment_id: str, flow_run_id: str) -> str | None:
    """The id of the parent run opened by flow run `flow_run_id` (`flow_parent_run`), if any."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_FLOW_RUN}` = '{_quote(flow_run_id)}' "
        f"and tags.`{TAG_ROLE}` = '{ROLE_PARENT}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


@dataclass
class TrackedRun:
    """An open MLflow run addressed by id; all logging goes through the client."""

    client: MlflowClient
    run_id: str
    resumed: bool = False
    experiment_id: str = ""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values stringified, long ones truncated); existing equal keys are kept."""
        existing = self.client.get_run(self.run_id).data.params
        fresh = {
            k: str(v)[:_MAX_PARAM_LEN]
            for k, v in params.items()
            if k not in existing and v is not None
        }
        items = list(fresh.items())
        for start in range(0, len(items), 100):
            batch = [mlflow.entities.Param(k, v) for k, v in items[start : start + 100]]
            self.client.log_batch(self.run_id, params=batch)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log finite scalar metrics at `step`."""
        ts = int(time.time() * 1000)
        batch = [
            mlflow.entities.Metric(_metric_key(k), float(v), ts, step or 0)
            for k, v in metrics.items()
            if v is not None and np.isfinite(float(v))
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set several tags at once."""
        batch = [mlflow.entities.RunTag(k, str(v)) for k, v in tags.items()]
        self.client.log_batch(self.run_id, tags=batch)

    def log_dict(self, data: Any, artifact_file: str) -> None:
        """Write a JSON artifact."""
        self.client.log_dict(self.run_id, data, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        """Write a text artifact."""
        self.client.log_text(self.run_id, text, artifact_file)

    def log_figure(self, fig: Any, artifact_file: str) -> None:
        """Write a matplotlib figure as an image artifact."""
        self.client.log_figure(self.run_id, fig, artifact_file)


def _metric_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in key)


def flatten_config(config: FlipConfig) -> dict[str, str]:
    """Every resolved setting as `section.key` -> value (lists/dicts as JSON)."""
    flat: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            flat[prefix] = json.dumps(node) if isinstance(node, list | dict) else str(node)

    walk("", config.model_dump(mode="json"))
    return flat


def code_version() -> str:
    """Git commit of the checkout (suffix `-dirty` with local changes), else the package version."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import version

        return f"flip-ctr=={version('flip-ctr')}"


def system_info() -> dict[str, str]:
    """Versions and hardware the run used: python, torch, CUDA, device, host."""
    cuda = torch.cuda.is_available()
    return {
        "sys.python": platform.python_version(),
        "sys.platform": platform.platform(),
        "sys.torch": torch.__version__,
        "sys.cuda_available": str(cuda),
        "sys.cuda_version": str(torch.version.cuda),
        "sys.device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "sys.gpu_count": str(torch.cuda.device_count()),
        "sys.cpu_count": str(os.cpu_count()),
        "sys.torch_threads": str(torch.get_num_threads()),
        "sys.mlflow": mlflow.__version__,
        "sys.host": socket.gethostname(),
    }


@contextmanager
def tracked_run(
    config: FlipConfig,
    run_name: str,
    flow_run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    resume_key: str | None = None,
) -> Iterator[TrackedRun]:
    """Open (or resume) a run; close it FINISHED, FAILED on error, KILLED on SIGTERM/Ctrl-C.

    Stale RUNNING runs in the experiment are repaired first. With a Prefect flow-run id (given
    or read from the Prefect runtime), a run with the same id and name (and `resume_key`, e.g.
    the stage's output folder, when given: one flow run may train a stage several times) is
    resumed, and a new run becomes a child of that flow run's parent run (`flow_parent_run`)
    when there is one.
    """
    client, experiment_id = configure(config.mlflow)
    repair_stale_runs(client, experiment_id, config.mlflow.stale_after_hours)
    flow_run_id = flow_run_id or current_flow_run_id()
    previous = (
        _resumable_run(client, experiment_id, flow_run_id, run_name, resume_key)
        if flow_run_id
        else None
    )
    if previous is not None:
        run_id = previous.info.run_id
        attempts = int(previous.data.tags.get(TAG_ATTEMPTS, "1")) + 1
        client.update_run(run_id, status="RUNNING")
    else:
        key_tag = {TAG_RESUME_KEY: resume_key} if resume_key else {}
        start_tags = _start_tags(client, experiment_id, flow_run_id, {**(tags or {}), **key_tag})
        run_id = client.create_run(experiment_id, run_name=run_name, tags=start_tags).info.run_id
        attempts = 1
    run = TrackedRun(client, run_id, resumed=previous is not None, experiment_id=experiment_id)
    pid = os.getpid()
    run.set_tags(
        {
            TAG_PID: pid,
            TAG_HOST: socket.gethostname(),
            TAG_PROC_START: process_start_time(pid) or "",
            TAG_ATTEMPTS: attempts,
            "flip.code_version": code_version(),
        }
    )
    with _sigterm_raises():
        try:
            yield run
        except (KeyboardInterrupt, RunTerminated) as exc:
            _record_error(run, exc)
            client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.KILLED))
            raise
        except BaseException as exc:
            _record_error(run, exc)
            client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FAILED))
            raise
        if previous is not None and TAG_ERROR in previous.data.tags:
            _clear_error(run, previous.data.tags[TAG_ERROR])
        client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FINISHED))


def error_line(exc: BaseException) -> str:
    """`Type: first line of the message`, for tags and summaries."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def _record_error(run: TrackedRun, exc: BaseException) -> None:
    """Put why a run failed on it: tag `flip.error` (one line), the run's description (the
    MLflow UI's note) and `error.txt` (the traceback). Best effort: never hides `exc`."""
    line = error_line(exc)[:_MAX_PARAM_LEN]
    trace = "".join(traceback.format_exception(exc))
    try:
        run.set_tags({TAG_ERROR: line, "mlflow.note.content": f"Failed: {line}"})
        run.log_text(trace, "error.txt")
    except Exception:  # the original error matters more than its record
        pass


def _clear_error(run: TrackedRun, error: str) -> None:
    """A resumed run that finished is no longer failed: keep the old error as history only."""
    run.set_tags({TAG_PREVIOUS_ERROR: error, "mlflow.note.content": f"Finished after: {error}"})
    run.client.delete_tag(run.run_id, TAG_ERROR)


def _start_tags(
    client: MlflowClient, experiment_id: str, flow_run_id: str | None, tags: Mapping[str, str]
) -> dict[str, str]:
    """A new run's tags: the flow-run id and, for a stage run, its flow's parent run."""
    if not flow_run_id:
        return dict(tags)
    start = {TAG_FLOW_RUN: flow_run_id, **tags}
    if tags.get(TAG_ROLE) != ROLE_PARENT:
        parent = flow_parent_run_id(client, experiment_id, flow_run_id)
        if parent is not None:
            start[TAG_PARENT] = parent
    return start


@contextmanager
def flow_parent_run(
    config: FlipConfig, prefix: str, tags: Mapping[str, str] | None = None
) -> Iterator[TrackedRun]:
    """The parent run of the current Prefect flow run, named `<prefix>-<flow run name>`.

    Opened by the flow before its tasks, with the resolved config and system info: every run a
    task opens under the same flow-run id nests under it. A retried flow run resumes it; it
    ends FINISHED when the flow body succeeds, FAILED when it raises, KILLED on SIGTERM/Ctrl-C
    (as `tracked_run`).
    """
    flow_run_id = current_flow_run_id()
    name = f"{prefix}-{_flow_run_name() or time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    role = {TAG_ROLE: ROLE_PARENT, **(tags or {})}
    with tracked_run(config, name, flow_run_id, tags=role) as run:
        log_config(run, config)
        log_system_info(run)
        yield run


def _flow_run_name() -> str | None:
    try:
        from prefect.runtime import flow_run
    except ImportError:  # pragma: no cover - prefect is a dependency
        return None
    name = flow_run.get_name()
    return str(name) if name else None


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """In the main thread, turn SIGTERM into `RunTerminated` for the duration of the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise RunTerminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def log_config(run: TrackedRun, config: FlipConfig) -> None:
    """The full resolved config as params and as `config.yaml`."""
    run.log_params(flatten_config(config))
    run.log_text(config.to_yaml(), "config.yaml")


def log_system_info(run: TrackedRun) -> None:
    """Software and hardware versions as tags and `system.json`."""
    info = system_info()
    run.set_tags(info)
    run.log_dict(info, "system.json")


def log_manifest(run: TrackedRun, manifest: Mapping[str, Any], name: str = "data") -> None:
    """A data manifest as `manifests/<name>.json`; its hash-like entries also as tags."""
    run.log_dict(dict(manifest), f"manifests/{name}.json")
    hashes = {
        f"{name}.{k}": v
        for k, v in manifest.items()
        if isinstance(v, str) and ("hash" in k or "sha" in k)
    }
    if hashes:
        run.set_tags(hashes)


def log_evaluation(
    run: TrackedRun,
    split: str,
    labels: np.ndarray,
    probs: np.ndarray,
    cold: np.ndarray | None = None,
) -> dict[str, float]:
    """AUC/logloss of one split as metrics (with a `cold` row mask, also on warm and cold
    rows), plus its ROC curve (`plots/roc_<split>.png`) and reliability plot
    (`plots/calibration_<split>.png`)."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    metrics = split_metrics(split, labels, probs, cold)
    if 0 < labels.sum() < len(labels):
        run.log_figure(plots.roc_figure(labels, probs, f"ROC ({split})"), f"plots/roc_{split}.png")
    run.log_figure(
        plots.reliability_figure(labels, probs, title=f"Calibration ({split})"),
        f"plots/calibration_{split}.png",
    )
    run.log_metrics(metrics)
    return metrics


def log_predictions(
    run: TrackedRun, predictions_dir: Path, splits: tuple[str, ...] = EVALUATION_SPLITS
) -> dict[str, float]:
    """`log_evaluation` for each `<split>.parquet` of a finetuning's per-row predictions
    (`label`, `prob`, `user_cold`; see `flip_core.flip_stages.write_predictions`)."""
    metrics: dict[str, float] = {}
    for split in splits:
        path = predictions_dir / f"{split}.parquet"
        if not path.is_file():
            continue
        table = pq.read_table(path, columns=["label", "prob", "user_cold"])
        metrics |= log_evaluation(
            run,
            split,
            table.column("label").to_numpy(),
            table.column("prob").to_numpy(),
            table.column("user_cold").to_numpy(zero_copy_only=False),
        )
    return metrics


def log_training_curves(run: TrackedRun, fusion_metric: str = "fusion_a") -> list[str]:
    """Plot every logged loss/accuracy/AUC history, grouped by objective; returns the plot files.

    Metric keys look like `<split>/<objective>_<kind>` (e.g. `train/mlm_loss`, `valid/auc`);
    one figure per (objective, kind) with one line per split. `fusion_metric` gets its own plot.
    """
    keys = run.client.get_run(run.run_id).data.metrics.keys()
    groups: dict[str, dict[str, list[tuple[int, float]]]] = {}
    written = []
    for key in keys:
        history = [(m.step, m.value) for m in run.client.get_metric_history(run.run_id, key)]
        if len(history) < 2:
            continue
        points = sorted(history)
        if key.endswith(fusion_metric):
            run.log_figure(plots.fusion_weight_figure(points), "plots/fusion_weight.png")
            written.append("plots/fusion_weight.png")
            continue
        split, _, name = key.rpartition("/")
        groups.setdefault(name, {})[split or "all"] = points
    for name, series in groups.items():
        path = f"plots/curve_{_metric_key(name).replace('/', '_')}.png"
        run.log_figure(plots.curves_figure(series, name, name), path)
        written.append(path)
    return written


def log_model_card(run: TrackedRun, info: ModelCardInfo) -> str:
    """Render the model card, log it as `model_card.md`, return the markdown."""
    text = render_model_card(info)
    run.log_text(text, "model_card.md")
    return text


class MLflowCallback(TrainerCallback):
    """Trainer callback: step logs, eval metrics and epoch summaries go to an MLflow run.

    Keys become `<split>/<name>` (`train/loss`, `train/mlm_loss`, `valid/auc`, `valid/loss`) so
    `log_training_curves` draws train and valid of one objective in one figure. An optional
    `prefix` (e.g. the stage) keeps several trainings in one run apart. Logs on the main rank only.
    """

    def __init__(self, run: TrackedRun, prefix: str = "", model: Any = None) -> None:
        self.run = run
        self.prefix = f"{prefix.rstrip('/')}/" if prefix else ""
        self.model = model

    def log_fusion_weight(self, state: TrainerState, value: float) -> None:
        """The FLIP fusion weight a (ID share of the final logit) at this step."""
        self.run.log_metrics({f"{self.prefix}train/fusion_a": value}, step=state.step)

    def _log(self, split: str, metrics: Mapping[str, float], step: int) -> None:
        scalars: dict[str, float] = {}
        for key, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name = key
            for known in ("train", "valid", "test"):
                if key.startswith(f"{known}_"):
                    split, name = known, key[len(known) + 1 :]
            scalars[f"{self.prefix}{split}/{name}"] = float(value)
        self.run.log_metrics(scalars, step=step)

    def on_step(self, state: TrainerState, logs: dict[str, float]) -> None:
        """Training losses, learning rate, throughput (on the trainer's log steps)."""
        if state.is_main and logs:
            self._log("train", logs, state.step)
            weight = getattr(self.model, "mix_weight", None)
            if weight is not None:
                self.log_fusion_weight(state, float(weight))

    def on_eval(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """Validation metrics (AUC, logloss, per-objective losses)."""
        if state.is_main:
            self._log("valid", metrics, state.step)

    def on_epoch_end(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """The epoch number, to line steps up with epochs."""
        if state.is_main:
            self.run.log_metrics({f"{self.prefix}epoch": float(state.epoch)}, step=state.step)

    def on_train_end(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """The final summary (best metric, throughput) as `<prefix>final/<name>`."""
        if state.is_main:
            self._log("final", metrics, state.step)


@contextmanager
def tracked_stage(
    config: FlipConfig,
    stage: str,
    manifest: Mapping[str, Any] | None = None,
    flow_run_id: str | None = None,
    model: Any = None,
    resume_key: str | None = None,
) -> Iterator[tuple[TrackedRun, MLflowCallback]]:
    """A run for one training/evaluation stage with config, system info and manifest logged.

    Yields the run and an `MLflowCallback` to hand to the trainer; on success the loss/accuracy
    curves (and the fusion weight, when logged) are drawn from the logged histories.
    `resume_key` (the stage's output folder) tells apart several trainings of one stage in one
    flow run (e.g. seeds), which would otherwise resume each other's run.
    """
    with tracked_run(config, stage, flow_run_id, {"stage": stage}, resume_key) as run:
        log_config(run, config)
        log_system_info(run)
        if manifest is not None:
            log_manifest(run, manifest)
        yield run, MLflowCallback(run, model=model)
        log_training_curves(run)
