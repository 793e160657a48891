"""docs/operations.md, run as written: every `<!-- step: ... -->` block of the runbook's main path.

The blocks are read from the markdown (so docs and test cannot drift) and run in order with bash,
each in the shell state the previous one left (exported variables are carried over), against the
servers the blocks themselves start: `mlflow server` and `prefect server start` on 127.0.0.1, a
process worker, the deployments of `prefect.yaml`. After each block the test checks its effect
through the Prefect API and MLflow. What the test changes in the text, and only that:

- where things live: the checkout, `$PREFECT_HOME`, `$FLIP_STATE`, `/data/...` (tmp folders) and
  the two ports (free ones);
- every `prefect deployment run 'nightly-retrain/nightly-retrain'` also gets a tiny PLM and tiny
  training settings (CI has 2 cores), and the inbox holds a small synthetic MovieLens-shaped log;
- the placeholders an operator fills in by reading the previous output (`<schedule-id>`,
  `<flow-run-id>`, `<version>`) are filled in from the API.

The Prefect server's scheduler runs every 2 s instead of 60 s (environment), so pausing and
resuming the schedule can be checked without waiting minutes. Every process the blocks start is
stopped by the `stop` block; the test kills what is left (by the pid files) whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow import MlflowClient

from flip_core.data.synth import write_synthetic_movielens
from tests.mlflow_server import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = REPO_ROOT / "docs" / "operations.md"
BIN = Path(sys.executable).parent
MAIN_PATH = (
    "setup",
    "mlflow-server",
    "prefect-server",
    "deploy",
    "worker",
    "run",
    "pause",
    "resume",
    "rehearse-failure",
    "find-failure",
    "rollback",
    "stop",
)
NIGHTLY_RUN = "prefect deployment run 'nightly-retrain/nightly-retrain'"
PID_FILES = ("prefect-worker.pid", "prefect-server.pid", "mlflow-server.pid")
BLOCK_TIMEOUT_S = 600
TINY = [
    "training.epochs=1",
    "training.batch_size=64",
    "pretrain.max_rows=200",
    "features.max_length=96",
]
_STEP = re.compile(r"<!-- step: ([a-z-]+) -->\n```bash\n(.*?)\n```", re.S)


def runbook_steps(text: str) -> list[tuple[str, str]]:
    """(name, bash block) of every marked step, in document order."""
    return _STEP.findall(text)


def test_runbook_main_path_is_marked_in_order() -> None:
    steps = runbook_steps(RUNBOOK.read_text(encoding="utf-8"))
    assert tuple(name for name, _ in steps) == MAIN_PATH
    assert all(block.strip() for _, block in steps)


@dataclass
class Shell:
    """Runs runbook blocks one after the other, carrying exported variables between them."""

    root: Path
    env: dict[str, str]
    replace: dict[str, str]
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> Path:
        return self.root / "state"

    def exported(self, name: str) -> str:
        found = re.search(rf"declare -x {name}=\"([^\"]*)\"", self._env_file.read_text())
        assert found, f"{name} not exported"
        return found.group(1)

    @property
    def _env_file(self) -> Path:
        return self.root / "shell.env"

    def run(self, name: str, block: str, fill: dict[str, str] | None = None) -> int:
        text = block
        for old, new in {**self.replace, **(fill or {})}.items():
            text = text.replace(old, new)
        assert not re.search(r"<[a-z-]+>", text), f"unfilled placeholder in step {name}:\n{text}"
        source = f"source {self._env_file}\n" if self._env_file.exists() else ""
        script = f"set -eo pipefail\n{source}{text}\nexport -p > {self._env_file}\n"
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=REPO_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
            check=False,
        )
        self.outputs[name] = result.stdout + result.stderr
        (self.root / f"{name}.out").write_text(self.outputs[name], encoding="utf-8")
        return result.returncode


@dataclass
class Apis:
    """The servers the runbook started, seen from the test."""

    prefect: str
    mlflow: str

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = httpx.post(f"{self.prefect}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.prefect}{path}", timeout=30)
        response.raise_for_status()
        return response.json()

    def nightly(self) -> dict[str, Any]:
        return dict(self.get("/deployments/name/nightly-retrain/nightly-retrain"))

    def flow_runs(self, **state: Any) -> list[dict[str, Any]]:
        body: dict[str, Any] = {
            "deployments": {"id": {"any_": [self.nightly()["id"]]}},
            "sort": "EXPECTED_START_TIME_DESC",
        }
        if state:
            body["flow_runs"] = {"state": state}
        return list(self.post("/flow_runs/filter", body))

    def queued_by_schedule(self) -> list[dict[str, Any]]:
        runs = self.flow_runs(type={"any_": ["SCHEDULED"]})
        return [r for r in runs if r["auto_scheduled"]]

    def registry(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.mlflow, registry_uri=self.mlflow)


def _wait(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _run_id(output: str) -> str:
    found = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    assert found, output
    return found.group(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.is_file() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _kill_leftovers(state: Path, api: str) -> None:
    """SIGKILL the process groups the blocks started and any flow run still going."""
    with contextlib.suppress(httpx.HTTPError):
        body = {"flow_runs": {"state": {"type": {"any_": ["RUNNING", "PENDING"]}}}}
        for run in httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json():
            pid = (run.get("infrastructure_pid") or "").rsplit(":", 1)[-1]
            if pid.isdigit():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(pid), signal.SIGKILL)
    for name in PID_FILES:
        path = state / name
        if path.is_file() and path.read_text().strip().isdigit():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(path.read_text().strip()), signal.SIGKILL)


@pytest.fixture
def shell(tmp_path: Path, tiny_plm_dir: Path) -> Iterator[tuple[Shell, Apis]]:
    prefect_port, mlflow_port = free_port(), free_port()
    tiny = {"plm": str(tiny_plm_dir), "overrides": TINY}
    replace = {
        "/srv/flip-ctr": str(REPO_ROOT),
        "$FLIP_CTR_HOME/.prefect": str(tmp_path / "prefect-home"),
        "/var/lib/flip-ctr": str(tmp_path / "state"),
        "/data/": f"{tmp_path}/data/",
        "127.0.0.1:4200": f"127.0.0.1:{prefect_port}",
        "--port 4200": f"--port {prefect_port}",
        "127.0.0.1:5000": f"127.0.0.1:{mlflow_port}",
        "--port 5000": f"--port {mlflow_port}",
        "--workers 2": "--workers 1",
        NIGHTLY_RUN: f"{NIGHTLY_RUN} --params '{json.dumps(tiny)}'",
    }
    text = RUNBOOK.read_text(encoding="utf-8")
    blocks = "\n".join(block for _, block in runbook_steps(text))
    for old in replace:
        assert old in blocks, f"the runbook no longer says {old!r}: update this test"
    dropped = ("PREFECT_", "MLFLOW_", "FLIP_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        COLUMNS="250",  # rich tables keep whole ids
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",
    )
    write_synthetic_movielens(tmp_path / "data" / "inbox", 40, 30, 20, 0)
    apis = Apis(f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}")
    runner = Shell(tmp_path, env, replace)
    try:
        yield runner, apis
    finally:
        _kill_leftovers(runner.state, apis.prefect)


@pytest.mark.integration
@pytest.mark.slow
def test_runbook_main_path_as_written(shell: tuple[Shell, Apis]) -> None:
    sh, api = shell
    steps = dict(runbook_steps(RUNBOOK.read_text(encoding="utf-8")))

    def ok(name: str, fill: dict[str, str] | None = None) -> str:
        code = sh.run(name, steps[name], fill)
        assert code == 0, f"step {name} exited {code}:\n{sh.outputs[name][-4000:]}"
        return sh.outputs[name]

    ok("setup")
    assert sh.state.is_dir()
    assert sh.exported("PREFECT_HOME") == str(sh.root / "prefect-home")

    ok("mlflow-server")
    assert sh.exported("MLFLOW_TRACKING_URI") == api.mlflow
    assert httpx.get(f"{api.mlflow}/health", timeout=10).status_code == 200

    ok("prefect-server")
    assert api.get("/health") is True
    assert api.get("/work_pools/flip-process")["type"] == "process"

    ok("deploy")
    names = {d["name"] for d in api.post("/deployments/filter", {"limit": 20})}
    assert names == {"nightly-retrain", "ingest", "batch-score", "benchmark"}
    params = api.nightly()["parameters"]
    assert params["raw_dir"] == f"{sh.root}/data/inbox"
    assert params["data_root"] == f"{sh.root}/data/flip"
    assert "tracking_uri" not in params  # MLflow's location comes from the worker's environment

    ok("worker")
    _wait(
        "the worker to poll",
        lambda: bool(api.post("/work_pools/flip-process/workers/filter", {})),
    )

    # Run: trains on the inbox, registers in the MLflow server named by MLFLOW_TRACKING_URI.
    out = ok("run")
    run = api.get(f"/flow_runs/{_run_id(out)}")
    assert run["state"]["type"] == "COMPLETED"
    registry = api.registry()
    model = registry.get_registered_model("flip-ctr")
    assert model.tags["dataset"] == "ml-1m"
    assert dict(model.aliases) == {"champion": "1", "challenger": "1"}
    v1 = registry.get_model_version("flip-ctr", "1")
    assert v1.tags["dataset"] == "ml-1m"
    assert (v1.description or "").startswith("# Model card: flip-ctr v1 (flip_id)")
    assert f"flip-ctr in {api.mlflow}: dataset ml-1m, champion v1" in out
    listed = r"^1 +challenger,champion +ml-1m +ml1m-time-811 +flip_id +0\.\d+ +0\.\d+ +promoted$"
    assert re.search(listed, out, re.M), out

    # Pause: the runs the schedule queued are deleted; a run started by hand stays.
    _wait("the schedule to queue nights", lambda: len(api.queued_by_schedule()) > 0)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    manual = api.post(
        f"/deployments/{api.nightly()['id']}/create_flow_run",
        {"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": later}}},
    )
    (schedule,) = api.nightly()["schedules"]
    ok("pause", {"<schedule-id>": schedule["id"]})
    assert api.nightly()["schedules"][0]["active"] is False
    assert api.queued_by_schedule() == []
    assert api.get(f"/flow_runs/{manual['id']}")["state"]["type"] == "SCHEDULED"
    time.sleep(5)  # two scheduler passes: a paused schedule queues nothing
    assert api.queued_by_schedule() == []

    out = ok("resume", {"<schedule-id>": schedule["id"]})
    assert api.nightly()["schedules"][0]["active"] is True
    _wait("the schedule to queue nights again", lambda: len(api.queued_by_schedule()) > 0)
    httpx.delete(f"{api.prefect}/flow_runs/{manual['id']}", timeout=30).raise_for_status()

    # A run without raw data fails at once, with the message, in Prefect and in MLflow.
    assert sh.run("rehearse-failure", steps["rehearse-failure"]) != 0
    failed_id = _run_id(sh.outputs["rehearse-failure"])
    failed = api.get(f"/flow_runs/{failed_id}")
    assert failed["state"]["type"] == "FAILED"
    assert "no raw data" in failed["state"]["message"]

    out = ok("find-failure", {"<flow-run-id>": failed_id})
    assert failed_id in out
    assert "no raw data: this run has no raw_dir" in out  # inspect: the state message
    assert "raise NoRawDataError(NO_RAW_DATA)" in out  # logs: the task's traceback
    (parent,) = registry.search_runs(
        [model_experiment(registry)],
        filter_string=f"tags.`prefect.flow_run_id` = '{failed_id}'",
    )
    assert parent.info.status == "FAILED"
    assert parent.data.tags["flip.error"].startswith("NoRawDataError: no raw data")

    # Roll back: a newer version became champion and misbehaves; put v1 back.
    assert v1.source is not None
    v2 = registry.create_model_version("flip-ctr", v1.source, v1.run_id, tags=v1.tags)
    registry.set_registered_model_alias("flip-ctr", "champion", v2.version)
    out = ok("rollback", {"<version>": "1"})
    assert registry.get_model_version_by_alias("flip-ctr", "champion").version == "1"
    reason = registry.get_model_version("flip-ctr", "1").tags["champion.reason"]
    assert reason == "the newer version mis-scores new users"
    assert f"champion v{v2.version}" in out and out.rstrip().count("champion v1") >= 1

    pids = [int((sh.state / name).read_text()) for name in PID_FILES]
    ok("stop")
    _wait("every service to stop", lambda: not any(_alive(pid) for pid in pids), timeout_s=60)


def model_experiment(client: MlflowClient) -> str:
    experiment = client.get_experiment_by_name("flip-ctr")
    assert experiment is not None
    return str(experiment.experiment_id)
