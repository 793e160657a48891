"""User-level (cluster) bootstrap of paired seed-mean AUC differences."""

from __future__ import annotations

import numpy as np
import pytest

from flip_core.evidence import ScoredRows, SortedScores, seed_mean_difference, user_weight_draws
from flip_core.metrics import binary_auc


def test_weighted_auc_equals_auc_of_repeated_rows() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(np.float64)
    s = np.round(rng.normal(size=300) + y, 1)  # rounded: many ties
    w = rng.integers(0, 4, size=(3, 300)).astype(np.float64)
    got = SortedScores(y, s).auc(w)
    for k in range(3):
        rep = np.repeat(np.arange(300), w[k].astype(int))
        assert got[k] == pytest.approx(binary_auc(y[rep], s[rep]), abs=1e-12)


def test_user_draws_weight_every_row_of_a_user_alike() -> None:
    users = np.array([5, 5, 9, 2, 9, 9, 2])
    for w in user_weight_draws(users, draws=30, seed=1, chunk=7):
        assert (w[:, 0] == w[:, 1]).all() and (w[:, 2] == w[:, 4]).all()
        per_user = w[:, [0, 2, 3]]  # one row of each of the 3 users
        assert (per_user.sum(axis=1) == 3).all()
    again = np.concatenate(list(user_weight_draws(users, 30, seed=1)))
    assert np.array_equal(again, np.concatenate(list(user_weight_draws(users, 30, seed=1))))


def _clustered(seed: int = 0) -> tuple[ScoredRows, list[np.ndarray], list[np.ndarray]]:
    """30 users x 80 rows; model a beats b by a margin that differs a lot between users."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(30), 80)
    y = rng.integers(0, 2, users.size).astype(np.float64)
    signal = y + rng.normal(size=users.size)
    gain = rng.normal(0.3, 0.8, 30)[users]  # per-user effect of a over b
    b = [signal + rng.normal(scale=1.5, size=users.size) for _ in range(3)]
    a = [p + gain * (y - 0.5) for p in b]
    rows = ScoredRows.build(
        y, users.astype(str), user_cold=users < 10, item_train_count=np.arange(users.size) % 100
    )
    return rows, a, b


def test_cluster_interval_is_wider_than_a_row_interval_and_covers_the_mean() -> None:
    rows, a, b = _clustered()
    by_user = seed_mean_difference(rows, a, b, draws=400, seed=3)
    by_row = seed_mean_difference(
        ScoredRows(rows.labels, np.arange(rows.labels.size), rows.slices), a, b, draws=400, seed=3
    )
    assert by_user is not None and by_row is not None
    assert by_user.users == 30 and by_row.users == rows.labels.size
    assert by_user.low < by_user.mean < by_user.high
    assert (by_user.high - by_user.low) > 2 * (by_row.high - by_row.low)
    point = np.mean([binary_auc(rows.labels, p) for p in a]) - np.mean(
        [binary_auc(rows.labels, p) for p in b]
    )
    assert by_user.mean == pytest.approx(point)


def test_slices_identical_models_and_degenerate_slices() -> None:
    rows, a, b = _clustered(1)
    same = seed_mean_difference(rows, b, b, "cold", draws=50)
    assert same is not None and same.mean == same.low == same.high == 0.0
    assert same.users == 10 and same.rows == 800
    tail = seed_mean_difference(rows, a, b, "long_tail", draws=50)
    assert tail is not None and tail.rows == int((np.arange(2400) % 100 < 50).sum())
    one_class = ScoredRows(np.ones(4), np.arange(4), {"overall": np.ones(4, bool)})
    assert seed_mean_difference(one_class, [np.arange(4.0)], [np.arange(4.0)]) is None


def test_targets_and_rendering_follow_the_figures() -> None:
    from flows.evidence import render_evidence, targets

    d = {"mean": 0.003, "low": 0.001, "high": 0.005, "share_le_0": 0.0}
    evidence = {
        "dcnv2_test_auc": 0.7754,
        "dcnv2_test_auc_seeds": [0.7761, 0.7741, 0.7761],
        "flip_id_minus_scratch": d,
        "flip_id_minus_control": {**d, "low": -0.001},
        "flip_minus_plm_only": None,
        "slices": {"flip_id_minus_scratch": {"overall": d}},
        "arms": {},
    }
    got = targets(evidence)
    assert got["dcnv2_test_auc >= 0.7755"] is False
    assert got["flip_id - scratch >= +0.002, interval above 0"] is True
    assert got["flip_id - control: interval above 0"] is False
    assert got["flip - plm_only: interval above 0"] is None
    evidence["targets"] = got
    text = render_evidence(evidence)
    assert "| flip_id_minus_scratch | +0.0030 [+0.0010, +0.0050] |" in text
    assert "| flip_minus_plm_only | not run |" in text
    assert "**not met**" in text and "not measured" in text
