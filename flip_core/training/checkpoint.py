"""Checkpoint directories: model weights, optimizer/scheduler, trainer state, per-rank RNG.

Layout of `<output_dir>/checkpoints/checkpoint-<step>/`:
`model.safetensors`, `optimizer.pt` (optimizer + scheduler), `trainer_state.json` and one
`rng_state_<rank>.pt` per process. A directory is written under a temporary name and renamed
when complete, so a crash never leaves a half-written checkpoint behind a real name.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flip_core.models.saving import load_weights, save_weights
from flip_core.training import distributed as ddp
from flip_core.training.callbacks import TrainerState

_CKPT = re.compile(r"^checkpoint-(\d+)$")


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states, in types `torch.load(weights_only=True)` reads
    back."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [name, torch.from_numpy(np.array(keys, dtype=np.uint32)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy(), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoint directories under `directory`, oldest step first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _CKPT.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainerState,
    keep: int,
) -> Path:
    """Write checkpoint-<step> (collective under DDP: every rank must call it)."""
    final = directory / f"checkpoint-{state.step}"
    tmp = directory / f".tmp-checkpoint-{state.step}"
    if ddp.is_main_process():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    ddp.barrier()
    torch.save(capture_rng(), tmp / f"rng_state_{ddp.rank()}.pt")
    if ddp.is_main_process():
        save_weights(model, tmp)
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
            tmp / "optimizer.pt",
        )
        (tmp / "trainer_state.json").write_text(state.to_json(), encoding="utf-8")
    ddp.barrier()
    if ddp.is_main_process():
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in list_checkpoints(directory)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    ddp.barrier()
    return final


def load_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> TrainerState:
    """Restore everything `save_checkpoint` wrote; returns the trainer state."""
    load_weights(model, path, str(device))
    opt = torch.load(path / "optimizer.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    rng_file = path / f"rng_state_{ddp.rank()}.pt"
    if not rng_file.is_file():
        raise FileNotFoundError(f"{rng_file} missing: resume with the same number of processes")
    restore_rng(torch.load(rng_file, weights_only=True))
    return TrainerState.from_json((path / "trainer_state.json").read_text(encoding="utf-8"))
