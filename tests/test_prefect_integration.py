"""The deployments on a real Prefect server and process worker, as ops run them.

One server (`prefect server start` on 127.0.0.1, its own PREFECT_HOME) and one process worker
serve the module; `prefect.yaml` is deployed as is; runs go through
`prefect deployment run 'nightly-retrain/nightly-retrain' --watch`. The worker resolves
`{{ $FLIP_CTR_HOME }}` from its own environment, so it runs this checkout. Both processes are
stopped (their whole process groups) whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
DEPLOYMENT = "nightly-retrain/nightly-retrain"
START_TIMEOUT_S = 240
RUN_TIMEOUT_S = 600
# Small enough for CI's 2 cores; every stage still sees train/valid/test rows.
TINY = [
    "synth.enabled=true",  # the nightly deployment has no inbox: synthetic data, asked for
    "synth.users=40",
    "synth.items=30",
    "synth.events_per_user=20",
    "training.epochs=1",
    "training.batch_size=64",
    "pretrain.max_rows=200",
    "features.max_length=96",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started with start_new_session and everything in its process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the leader's children (flow runs) too
    proc.wait(timeout=20)


@dataclass
class PrefectStack:
    """A running server + worker with `prefect.yaml` deployed."""

    env: dict[str, str]
    api: str
    workdir: Path

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PREFECT, *args],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.api}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.api}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def run_deployment(
        self, params: dict[str, Any], env: dict[str, str] | None = None, watch: bool = True
    ) -> str:
        """`prefect deployment run ... [--watch]`; returns the flow-run id.

        MLflow's location reaches the run as the work-pool variable `MLFLOW_TRACKING_URI` (the
        run's `env` job variable), as ops would set it: no parameter or override names it.
        """
        data_root = Path(params["data_root"])
        env = {"MLFLOW_TRACKING_URI": _tracking(data_root), **(env or {})}
        args = ["deployment", "run", DEPLOYMENT, "--params", json.dumps(params)]
        args += ["--job-variable", f"env={json.dumps(env)}"]
        if watch:
            args += ["--watch", "--watch-timeout", str(RUN_TIMEOUT_S)]
        result = self.cli(*args, timeout=RUN_TIMEOUT_S + 60)
        found = re.search(r"UUID:\s*([0-9a-f-]{36})", result.stdout)
        assert found, result.stdout + result.stderr
        return found.group(1)

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/flow_runs/{run_id}"))

    def task_runs(self, run_id: str) -> dict[str, dict[str, Any]]:
        """Task runs of a flow run by task name (the last one wins for repeated names)."""
        runs = self.post(
            "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}, "limit": 200}
        )
        return {r["name"].rsplit("-", 1)[0]: r for r in runs}

    def artifacts(self, run_id: str) -> dict[str, dict[str, Any]]:
        found = self.post(
            "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}, "limit": 100}
        )
        return {a["key"]: a for a in found if a.get("key")}

    def wait_state(self, run_id: str, done: set[str], timeout: float = RUN_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.flow_run(run_id)["state"]["type"]
            if state in done:
                return str(state)
            time.sleep(2)
        raise AssertionError(f"flow run {run_id} not in {done} after {timeout} s")


def _wait_healthy(api: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"prefect server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{api}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"prefect server not healthy after {START_TIMEOUT_S} s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectStack]:
    workdir = tmp_path_factory.mktemp("prefect-stack")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(workdir / "home"),
        PREFECT_API_URL=api,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="true",
        MLFLOW_DISABLE_TELEMETRY="true",
        HF_HUB_OFFLINE="1",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    env.pop("FLIP_CTR_HOME", None)  # deploy keeps the placeholder; the worker fills it in
    started: list[subprocess.Popen[bytes]] = []
    try:
        server_log = workdir / "server.log"
        with server_log.open("wb") as out:
            server = subprocess.Popen(
                [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(server)
        _wait_healthy(api, server, server_log)
        stack = PrefectStack(env=env, api=api, workdir=workdir)

        pool = stack.cli("work-pool", "create", "flip-process", "--type", "process")
        assert pool.returncode == 0, pool.stdout + pool.stderr
        deployed = stack.cli("--no-prompt", "deploy", "--all", timeout=300)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr

        worker_env = {**env, "FLIP_CTR_HOME": str(REPO_ROOT)}
        with (workdir / "worker.log").open("wb") as out:
            worker = subprocess.Popen(
                [PREFECT, "worker", "start", "--pool", "flip-process"],
                env=worker_env,
                cwd=workdir,  # not the checkout: the pull step must take the run there
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(worker)
        yield stack
    finally:
        if len(started) == 2:
            _kill_flow_runs(api)  # flow runs live in sessions of their own
        for proc in reversed(started):
            _stop(proc)


def _kill_flow_runs(api: str) -> None:
    """SIGKILL the process group of every flow run still running or pending."""
    with contextlib.suppress(httpx.HTTPError):
        body = {"flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING"]}}}}
        for run in httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30).json():
            pid = (run.get("infrastructure_pid") or "").rsplit(":", 1)[-1]
            if pid.isdigit():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(pid), signal.SIGKILL)


def _params(data_root: Path, plm: Path, *extra: str) -> dict[str, Any]:
    return {
        "config_file": "configs/demo.yaml",
        # synthetic data is its own dataset: the deployment's default spec (ml-1m) is replaced
        "dataset": "configs/datasets/synth-ml-1m.yaml",
        "data_root": str(data_root),
        "plm": str(plm),
        "variants": ["flip_id"],
        "overrides": [*TINY, *extra],
    }


def _tracking(data_root: Path) -> str:
    return f"sqlite:///{data_root}/mlflow.db"


def _versions(data_root: Path) -> dict[str, list[str]]:
    """Registered versions of `flip-ctr` and the aliases pointing at each."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=_tracking(data_root), registry_uri=_tracking(data_root))
    versions: dict[str, list[str]] = {
        str(v.version): [] for v in client.search_model_versions("name='flip-ctr'")
    }
    aliases: dict[str, str] = dict(client.get_registered_model("flip-ctr").aliases)
    for alias, version in sorted(aliases.items()):
        versions[str(version)].append(alias)
    return versions


def test_deployments_from_prefect_yaml(stack: PrefectStack):
    found = stack.post("/deployments/filter", {"limit": 50})
    by_name = {d["name"]: d for d in found}
    nightly = by_name["nightly-retrain"]
    assert nightly["work_pool_name"] == "flip-process"
    crons = [s["schedule"]["cron"] for s in nightly["schedules"]]
    assert crons == ["0 2 * * *"]
    assert nightly["schedules"][0]["schedule"]["timezone"] == "UTC"
    assert nightly["parameters"]["config_file"] == "configs/demo.yaml"
    assert {"ingest", "benchmark"} <= set(by_name)
    for name in ("nightly-retrain", "ingest", "benchmark"):  # the spec the inbox is read with
        assert by_name[name]["parameters"]["dataset"] == "configs/datasets/ml-1m.yaml"
    assert "raw_dir" not in nightly["parameters"] and "synthetic" not in nightly["parameters"]
    assert nightly["pull_steps"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $FLIP_CTR_HOME }}"}}
    ]


def test_nightly_run_end_to_end_then_a_rerun_does_nothing_new(
    stack: PrefectStack, tmp_path: Path, tiny_plm_dir: Path
):
    data_root = tmp_path / "data"
    params = _params(data_root, tiny_plm_dir)

    first = stack.run_deployment(params, env={"FLIP_FAULTS": "prepare-raw-data:fail-once"})
    assert stack.flow_run(first)["state"]["type"] == "COMPLETED"
    tasks = stack.task_runs(first)
    raw = tasks["prepare-raw-data"]
    assert raw["state"]["name"] == "Completed"
    assert raw["run_count"] == 2  # failed once, retried, completed
    assert {"ingest-raw", "build-features", "pretrain", "finetune", "publish-model"} <= set(tasks)
    artifacts = stack.artifacts(first)
    for key in ("validation-report", "metrics-vs-champion", "mlflow-run", "nightly-summary"):
        assert key in artifacts, sorted(artifacts)
    assert "No champion yet" in artifacts["metrics-vs-champion"]["data"]
    assert "(http://127.0.0.1:5000/#/experiments/" in artifacts["mlflow-run"]["data"]
    assert _versions(data_root) == {"1": ["challenger", "champion"]}
    manifest = (data_root / "lake" / "synth-ml-1m" / "_manifest.json").read_bytes()
    # the worker's own log (the flow runs' output): no progress bars, no weight-load report
    worker_log = (stack.workdir / "worker.log").read_text(errors="replace")
    assert "Finished in state Completed" in worker_log
    assert "it/s]" not in worker_log and "LOAD REPORT" not in worker_log

    second = stack.run_deployment(params)
    assert stack.flow_run(second)["state"]["type"] == "COMPLETED"
    again = stack.task_runs(second)
    assert set(again) == set(tasks)
    states = {name: r["state"]["name"] for name, r in again.items()}
    # ingest always looks at the inbox (idempotent, not cached); it found nothing new
    assert states.pop("ingest-raw") == "Completed"
    assert set(states.values()) == {"Cached"}, states
    assert (data_root / "lake" / "synth-ml-1m" / "_manifest.json").read_bytes() == manifest
    assert _versions(data_root) == {"1": ["challenger", "champion"]}  # no alias moved
    summary = stack.artifacts(second)["nightly-summary"]["data"]
    assert (
        f"no new model (publish-model cached): v1 was registered and gated by flow run {first}"
        in summary
    )
    assert "no champion yet" not in summary  # the first run's decision is not repeated as news


def test_killed_run_reruns_from_the_cache(stack: PrefectStack, tmp_path: Path, tiny_plm_dir: Path):
    data_root = tmp_path / "data"
    params = _params(data_root, tiny_plm_dir)
    killed = stack.run_deployment(params, env={"FLIP_FAULTS": "finetune:sleep=600"}, watch=False)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        running = stack.task_runs(killed).get("finetune", {}).get("state") or {}
        if running.get("type") == "RUNNING":
            break
        assert stack.flow_run(killed)["state"]["type"] not in {"FAILED", "CRASHED", "COMPLETED"}
        time.sleep(2)
    else:
        raise AssertionError("finetune never started")
    pid = int(stack.flow_run(killed)["infrastructure_pid"].rsplit(":", 1)[-1])
    os.killpg(pid, signal.SIGKILL)
    assert stack.wait_state(killed, {"CRASHED", "FAILED"}, timeout=120) in {"CRASHED", "FAILED"}
    done_before = {
        name for name, r in stack.task_runs(killed).items() if r["state"]["type"] == "COMPLETED"
    }
    assert {"prepare-raw-data", "build-features", "render-prompts", "pretrain"} <= done_before

    rerun = stack.run_deployment(params)
    assert stack.flow_run(rerun)["state"]["type"] == "COMPLETED"
    states = {name: r["state"]["name"] for name, r in stack.task_runs(rerun).items()}
    for name in done_before - {"ingest-raw"}:
        assert states[name] == "Cached", (name, states)
    assert states["finetune"] == "Completed"
    assert _versions(data_root) == {"1": ["challenger", "champion"]}
