"""Statistics for claims that one model beats another: user-level (cluster) bootstrap intervals
of paired differences of seed means, overall and on slices (warm users, cold users, long-tail
items).

Rows of one user are not independent (a cold-user test set of thousands of rows may come from a
few dozen users), so a resample draws *users* with replacement and keeps all their rows; each
drawn user's rows enter the AUC with the user's multiplicity as weight. Every model and seed is
scored on the same draws, so differences are paired. The statistic is

    mean over seeds of AUC(a, seed) - mean over seeds of AUC(b, seed)

on the resampled rows: the seed means absorb seed variance; the bootstrap adds the sampling
variance of the test users. The interval is the central 95% percentile interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flip_core.metrics import binary_auc

SLICES = ("overall", "warm", "cold", "long_tail")


@dataclass(frozen=True)
class ScoredRows:
    """What every run of a comparison was scored on: labels, user keys, slice masks."""

    labels: npt.NDArray[np.float64]
    users: npt.NDArray[np.int64]  # user index per row, 0..n_users-1
    slices: Mapping[str, npt.NDArray[np.bool_]]

    @classmethod
    def build(
        cls,
        labels: npt.ArrayLike,
        users: Sequence[str] | npt.ArrayLike,
        user_cold: npt.ArrayLike,
        item_train_count: npt.ArrayLike,
        long_tail_below: int = 50,
    ) -> ScoredRows:
        """Slices: all rows, warm/cold users (cold: unseen in train), long-tail items (fewer
        than `long_tail_below` train events)."""
        _, user_index = np.unique(np.asarray(users), return_inverse=True)
        cold = np.asarray(user_cold, dtype=bool)
        tail = np.asarray(item_train_count) < long_tail_below
        y = np.asarray(labels, dtype=np.float64)
        slices = {"overall": np.ones(y.size, bool), "warm": ~cold, "cold": cold, "long_tail": tail}
        return cls(y, user_index.astype(np.int64), slices)


class SortedScores:
    """One run's scores on one slice, sorted once, so each weighted AUC is a linear pass."""

    def __init__(self, labels: npt.NDArray[np.float64], scores: npt.ArrayLike) -> None:
        s = np.asarray(scores, dtype=np.float64)
        self.order = np.argsort(s, kind="mergesort")
        ordered = s[self.order]
        self.starts = np.concatenate(([0], np.flatnonzero(np.diff(ordered)) + 1))  # tie groups
        self.positive = labels[self.order]

    def auc(self, weights: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Weighted AUC (ties count one half) for each row of `weights` [draws, rows]."""
        w = weights[:, self.order]
        pos = np.add.reduceat(w * self.positive, self.starts, axis=1)
        neg = np.add.reduceat(w * (1.0 - self.positive), self.starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        num = (pos * (below + 0.5 * neg)).sum(axis=1)
        den = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def user_weight_draws(
    users: npt.NDArray[np.int64], draws: int, seed: int, chunk: int = 50
) -> Iterator[npt.NDArray[np.float64]]:
    """Row weights [chunk, rows] of `draws` user-level resamples: each resample draws as many
    users as there are, with replacement; a row's weight is its user's multiplicity."""
    present, local = np.unique(users, return_inverse=True)
    n_users = present.size
    rng = np.random.default_rng(seed)
    done = 0
    while done < draws:
        size = min(chunk, draws - done)
        counts = rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=size)
        yield counts[:, local].astype(np.float64)
        done += size


@dataclass(frozen=True)
class Difference:
    """Seed-mean AUC difference a - b with its user-level bootstrap interval."""

    mean: float
    low: float
    high: float
    share_le_0: float  # share of resamples where a does not beat b
    rows: int
    users: int

    def as_dict(self) -> dict[str, float]:
        """JSON form."""
        return {
            "mean": self.mean,
            "low": self.low,
            "high": self.high,
            "share_le_0": self.share_le_0,
            "rows": float(self.rows),
            "users": float(self.users),
        }


def seed_mean_difference(
    rows: ScoredRows,
    a_runs: Sequence[npt.ArrayLike],
    b_runs: Sequence[npt.ArrayLike],
    slice_name: str = "overall",
    draws: int = 1000,
    seed: int = 0,
) -> Difference | None:
    """Paired difference of seed means (a's seeds vs b's seeds, same test rows) on one slice,
    with a 95% user-level bootstrap interval; None when the slice has no rows or one class."""
    if not a_runs or not b_runs:
        raise ValueError("each side needs at least one run")
    mask = rows.slices[slice_name]
    y = rows.labels[mask]
    if y.size == 0 or y.min() == y.max():
        return None
    a = [SortedScores(y, np.asarray(p)[mask]) for p in a_runs]
    b = [SortedScores(y, np.asarray(p)[mask]) for p in b_runs]
    point = float(
        np.mean([binary_auc(y, np.asarray(p)[mask]) for p in a_runs])
        - np.mean([binary_auc(y, np.asarray(p)[mask]) for p in b_runs])
    )
    users = rows.users[mask]
    diffs = [
        np.mean([s.auc(w) for s in a], axis=0) - np.mean([s.auc(w) for s in b], axis=0)
        for w in user_weight_draws(users, draws, seed)
    ]
    values = np.concatenate(diffs)
    values = values[np.isfinite(values)]
    low, high = np.percentile(values, [2.5, 97.5]) if values.size else (math.nan, math.nan)
    return Difference(
        mean=point,
        low=float(low),
        high=float(high),
        share_le_0=float((values <= 0).mean()) if values.size else math.nan,
        rows=int(y.size),
        users=int(np.unique(users).size),
    )


def seed_stats(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample std (0 for one value) of per-seed figures."""
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "n": float(arr.size)}
