"""`flip run`'s temporary Prefect server dies with it, even when `flip run` is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tasks.child_process import shim_env

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 240


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_killed_flip_run_takes_its_prefect_server_down(tmp_path: Path):
    env = {k: v for k, v in shim_env().items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        FLIP_FAULTS="prepare-raw-data:sleep=600",  # the flow waits in its first step
    )
    cmd = [
        sys.executable, "-m", "flows.cli", "run", "--synthetic",
        "--dataset", "configs/datasets/synth-ml-1m.yaml",
        "--data-root", str(tmp_path / "data"),
        "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
    ]  # fmt: skip
    log = (tmp_path / "flip-run.log").open("wb")
    flip = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = None
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while server is None and time.monotonic() < deadline:
            assert flip.poll() is None, (tmp_path / "flip-run.log").read_text()[-3000:]
            servers = [p for p in _children(flip.pid) if "uvicorn" in _cmdline(p)]
            server = servers[0] if servers else None
            time.sleep(0.5)
        assert server is not None, "flip run started no Prefect server"
        assert "--host 127.0.0.1" in _cmdline(server)
        flip.send_signal(signal.SIGKILL)
        flip.wait()
        deadline = time.monotonic() + 30
        while _alive(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(server), "the Prefect server outlived the killed flip run"
    finally:
        flip.kill()
        flip.wait()
        log.close()
        if server is not None and _alive(server):
            os.kill(server, signal.SIGKILL)


FLOW_WITH_LOGS = """
from prefect import flow, get_run_logger
from flows.cli.local_server import local_prefect_server

@flow
def chatty() -> int:
    for i in range(200):
        get_run_logger().info("line %d", i)
    return 7

with local_prefect_server() as api:
    assert api is not None and api.startswith("http://127.0.0.1:")
    print("result", chatty())
"""


def test_run_logs_reach_the_server_before_it_stops(tmp_path: Path):
    """The temporary server stops only after the log worker has sent the run's log lines (no
    'Error logging to API' retries at exit against a stopped server)."""
    env = {k: v for k, v in shim_env().items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    done = subprocess.run(
        [sys.executable, "-c", FLOW_WITH_LOGS],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "result 7" in done.stdout
    assert "line 199" in done.stderr  # the flow did log
    assert "Error logging to API" not in done.stderr
