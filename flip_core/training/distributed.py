"""Process-group setup for `torchrun` (gloo on CPU, nccl on CUDA) and small rank helpers."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of processes (1 without torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's global rank (0 without torchrun)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """True on rank 0 (and in single-process runs)."""
    return rank() == 0


def launched_by_torchrun() -> bool:
    """True when torchrun set WORLD_SIZE > 1 in the environment."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def resolve_device(requested: str) -> torch.device:
    """`auto` -> this rank's CUDA device when available, else CPU."""
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("training.device=cuda but no CUDA device is available")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed(device: torch.device) -> bool:
    """Join the torchrun process group if launched by torchrun; returns whether DDP is active."""
    if not launched_by_torchrun():
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return True


def barrier() -> None:
    """Wait for every rank (no-op in single-process runs)."""
    if world_size() > 1:
        dist.barrier()


def mean_across_ranks(value: float, device: torch.device) -> float:
    """Average a Python float over ranks."""
    if world_size() == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / world_size()


def sum_across_ranks(values: list[float], device: torch.device) -> list[float]:
    """Sum a list of floats over ranks."""
    if world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]
