"""The training engine shared by every stage: `Trainer`, callbacks, checkpoints, DDP helpers."""

from flip_core.training.callbacks import JsonlMetricsCallback, TrainerCallback, TrainerState
from flip_core.training.checkpoint import list_checkpoints, seed_everything
from flip_core.training.data import ResumableDistributedSampler, TensorDictDataset, keep_batch
from flip_core.training.trainer import Trainer, TrainResult

__all__ = [
    "JsonlMetricsCallback",
    "ResumableDistributedSampler",
    "TensorDictDataset",
    "TrainResult",
    "Trainer",
    "TrainerCallback",
    "TrainerState",
    "keep_batch",
    "list_checkpoints",
    "seed_everything",
]
