"""Binary CTR metrics, exact over a whole split: ROC AUC and log loss.

`binary_auc` / `binary_logloss` take whole arrays. `BinaryMetricAccumulator` takes a split batch by
batch: it keeps each batch's logits (float32) and labels (uint8) in compact chunks, 5 bytes a row,
and accumulates log loss as a float64 running sum, so nothing of the model's outputs stays on the
device and the final AUC is still exact (ties get the average rank). Under DDP each rank
accumulates its own shard and `compute(gather=True)` combines them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

EPS = 1e-7


def binary_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Exact ROC AUC (Mann-Whitney U with average ranks for ties); NaN if one class is absent."""
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {s.shape}")
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    # Average rank (1-based) of each run of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    run_ranks = (starts + ends + 1) / 2.0
    ranks = np.repeat(run_ranks, ends - starts)
    positive_rank_sum = float(ranks[y[order]].sum())
    u = positive_rank_sum - positives * (positives + 1) / 2.0
    return u / (positives * negatives)


def binary_logloss(labels: npt.ArrayLike, probabilities: npt.ArrayLike, eps: float = EPS) -> float:
    """Mean binary cross-entropy of probabilities clipped to [eps, 1 - eps]."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probabilities, dtype=np.float64).ravel(), eps, 1.0 - eps)
    if y.size == 0:
        return math.nan
    return float(-(y * np.log(p) + (1.0 - y) * np.log1p(-p)).mean())


@dataclass
class BinaryMetricAccumulator:
    """Streams (logits, labels) batches; `compute()` gives exact AUC, log loss and row count."""

    _logits: list[npt.NDArray[np.float32]] = field(default_factory=list)
    _labels: list[npt.NDArray[np.uint8]] = field(default_factory=list)
    _loss_sum: float = 0.0
    _count: int = 0

    def update(self, logits: Tensor, labels: Tensor) -> None:
        """Add one batch of raw logits `[B]` and 0/1 labels `[B]`."""
        lg = logits.detach().float().reshape(-1).cpu()
        lb = labels.detach().float().reshape(-1).cpu()
        self._loss_sum += float(
            torch.nn.functional.binary_cross_entropy_with_logits(
                lg.double(), lb.double(), reduction="sum"
            )
        )
        self._count += lg.numel()
        self._logits.append(lg.numpy().astype(np.float32, copy=False))
        self._labels.append(lb.numpy().astype(np.uint8))

    def arrays(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
        """All logits and labels seen so far, concatenated."""
        if not self._logits:
            return np.zeros(0, np.float32), np.zeros(0, np.uint8)
        return np.concatenate(self._logits), np.concatenate(self._labels)

    def compute(self, gather: bool = False) -> dict[str, float]:
        """`{"auc", "logloss", "rows"}`; with `gather=True` over every DDP rank's rows."""
        logits, labels = self.arrays()
        loss_sum, count = self._loss_sum, self._count
        if gather and torch.distributed.is_available() and torch.distributed.is_initialized():
            parts: list[tuple[np.ndarray, np.ndarray, float, int] | None] = [None] * (
                torch.distributed.get_world_size()
            )
            torch.distributed.all_gather_object(parts, (logits, labels, loss_sum, count))
            logits = np.concatenate([p[0] for p in parts if p is not None])
            labels = np.concatenate([p[1] for p in parts if p is not None])
            loss_sum = sum(p[2] for p in parts if p is not None)
            count = sum(p[3] for p in parts if p is not None)
        return {
            "auc": binary_auc(labels, logits),  # AUC is rank-based: logits rank like probabilities
            "logloss": loss_sum / count if count else math.nan,
            "rows": float(count),
        }


def split_metrics(
    prefix: str,
    labels: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    cold: npt.ArrayLike | None = None,
) -> dict[str, float]:
    """`<prefix>_auc` and `<prefix>_logloss` over a split; with a `cold` row mask (e.g. the
    user is unseen in train), the same on its warm and cold rows plus their row counts."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    metrics = {f"{prefix}_auc": binary_auc(y, p), f"{prefix}_logloss": binary_logloss(y, p)}
    if cold is None:
        return metrics
    mask = np.asarray(cold, dtype=bool)
    for name, rows in (("warm", ~mask), ("cold", mask)):
        metrics[f"{prefix}_{name}_rows"] = float(rows.sum())
        if rows.any():
            metrics[f"{prefix}_{name}_auc"] = binary_auc(y[rows], p[rows])
            metrics[f"{prefix}_{name}_logloss"] = binary_logloss(y[rows], p[rows])
    return metrics
