"""A flow process SIGKILLed during finetuning, then run again: finished steps are cache hits and
finetuning resumes from its checkpoint to the same final step as an uninterrupted run.

Both runs are separate processes (`python -c` calling the flow) on the session's temporary
Prefect API; task states and the trainer's resume line are read from their console logs.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_S = 600
BATCH = 64
_RUN = (
    "import json, sys\n"
    "from flows.nightly_retrain import nightly_retrain\n"
    "nightly_retrain(**json.loads(sys.argv[1]))\n"
)
_STATE = re.compile(r"Task run '([a-z-]+)-[0-9a-z]+' - Finished in state (\w+)\(")


def _start(params: Mapping[str, object], log: Path, faults: str = "") -> subprocess.Popen[bytes]:
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "FLIP_FAULTS": faults}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", _RUN, json.dumps(params)],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _states(log: Path) -> dict[str, str]:
    return dict(_STATE.findall(log.read_text(errors="replace")))


def test_killed_during_finetuning_then_rerun_resumes(tmp_path: Path, tiny_plm_dir: Path):
    data_root = tmp_path / "data"
    params = {
        "data_root": str(data_root),
        "plm": str(tiny_plm_dir),
        "variants": ["flip_id"],
        "overrides": [
            "synth.enabled=true",
            "paths.dataset=configs/datasets/synth-ml-1m.yaml",
            "synth.users=40",
            "synth.items=30",
            "synth.events_per_user=20",
            "training.epochs=1",
            f"training.batch_size={BATCH}",
            "training.checkpoint_every_steps=2",
            "pretrain.max_rows=128",
            "features.max_length=96",
            f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
        ],
    }
    first_log = tmp_path / "first.log"
    first = _start(params, first_log, faults="finetune:step-sleep=2")
    checkpoints = data_root / "work" / "finetune"
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not list(checkpoints.glob("*/checkpoints/checkpoint-*")):
            assert first.poll() is None, first_log.read_text()[-3000:]
            assert time.monotonic() < deadline, "finetune wrote no checkpoint"
            time.sleep(0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    done = _states(first_log)
    assert {"prepare-raw-data", "build-features", "render-prompts", "pretrain"} <= set(done)
    assert "finetune" not in done
    saved = max(int(p.name.split("-")[1]) for p in checkpoints.glob("*/checkpoints/checkpoint-*"))

    second_log = tmp_path / "second.log"
    second = _start(params, second_log)
    try:
        assert second.wait(timeout=RUN_TIMEOUT_S) == 0, second_log.read_text()[-3000:]
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
    states = _states(second_log)
    for name in set(done) - {"ingest-raw"}:
        assert states[name] == "Cached", (name, states)
    assert states["finetune"] == "Completed"
    text = second_log.read_text(errors="replace")
    assert f"finetune: resumed from step {saved} " in text, text[-3000:]
    steps = re.search(r"flip_id: finetuned (\d+) steps", text)
    assert steps, text[-3000:]
    # An uninterrupted run takes ceil(train rows / batch) optimizer steps in its one epoch.
    (train,) = data_root.glob("features/**/prompts/*/train.parquet")  # what finetuning reads
    assert int(steps.group(1)) == math.ceil(pq.read_metadata(train).num_rows / BATCH) > saved
