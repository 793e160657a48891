"""DDP through torchrun with two CPU processes (gloo) matches one process at the same global batch.

Why a tolerance at all: with dropout off and the same global batch, both runs see exactly the same
rows in each optimizer step (the sampler order depends only on seed and epoch; rank r takes every
N-th row of each global batch), and DDP averages the two half-batch mean gradients, which is
mathematically the full-batch mean gradient. Only float32 summation order differs (two partial
sums plus an all-reduce instead of one sum), ~1e-7 relative per step, and Adam can amplify such
differences over steps. Measured on this setup: max |loss diff| 6e-8, max |weight diff| 4.5e-8
over 20 steps. We allow 1e-5 absolute on the logged losses, weights and valid metrics (~100x the
observed gap, robust to other BLAS builds), four orders of magnitude below the real signal: the
loss falls by > 0.05 over the run (0.16 measured).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from flip_core.config import TrainingConfig
from flip_core.training import Trainer, keep_batch
from tests.test_trainer import make_data, make_model

REPO_ROOT = Path(__file__).resolve().parent.parent
TOL = 1e-5

DDP_CONFIG = TrainingConfig(
    batch_size=32,
    epochs=1,
    learning_rate=3e-3,
    log_every_steps=1,
    num_threads=1,
    progress=False,
    checkpoint_every_steps=8,
    device="cpu",
    seed=11,
)


def run(out: Path) -> dict[str, Any]:
    """Train the shared small DCNv2 and return its loss curve, valid metrics and weights."""
    torch.set_num_threads(1)
    trainer = Trainer(
        make_model(dropout=0.0),
        DDP_CONFIG,
        make_data(640, seed=1),
        make_data(200, seed=2),
        output_dir=out,
        collate_fn=keep_batch,
    )
    result = trainer.train()
    return {
        "world_size": trainer.world_size,
        "losses": [h["loss"] for h in result.history if "loss" in h],
        "valid": result.valid_metrics,
        "weights": {k: v.flatten().tolist() for k, v in trainer.model.state_dict().items()},
    }


def main() -> None:
    """torchrun entry point: rank 0 writes the summary to argv[1]."""
    out = Path(sys.argv[1])
    summary = run(out / "run")
    if int(os.environ.get("RANK", "0")) == 0:
        (out / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    torch.distributed.destroy_process_group()


def test_two_cpu_processes_match_one(tmp_path: Path) -> None:
    single = run(tmp_path / "single")
    assert single["world_size"] == 1
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "tests.test_ddp", str(tmp_path / "ddp"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    double = json.loads((tmp_path / "ddp" / "summary.json").read_text(encoding="utf-8"))
    assert double["world_size"] == 2

    losses_1, losses_2 = single["losses"], double["losses"]
    assert isinstance(losses_1, list) and len(losses_1) == len(losses_2) == 20
    assert max(abs(a - b) for a, b in zip(losses_1, losses_2, strict=True)) < TOL
    assert losses_1[0] - min(losses_1[-5:]) > 0.05  # it did learn something
    worst = max(
        max(abs(a - b) for a, b in zip(w1, double["weights"][name], strict=True))
        for name, w1 in single["weights"].items()
    )
    assert worst < TOL
    # Valid metrics are gathered from both ranks' shards: same rows, same AUC.
    v1, v2 = single["valid"], double["valid"]
    assert abs(v1["valid_auc"] - v2["valid_auc"]) < TOL
    assert abs(v1["valid_loss"] - v2["valid_loss"]) < TOL


if __name__ == "__main__":
    main()
