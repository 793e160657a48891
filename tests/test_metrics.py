"""AUC and log loss: exact against scikit-learn, ties, streaming equals whole-array."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss, roc_auc_score

from flip_core.metrics import BinaryMetricAccumulator, binary_auc, binary_logloss


def test_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    scores = np.round(rng.normal(labels * 0.5, 1.0), 1)  # rounding creates many ties
    assert len(np.unique(scores)) < 200
    assert binary_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_known_values() -> None:
    assert binary_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert binary_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert binary_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert binary_auc([0, 1, 1], [0.2, 0.2, 0.9]) == 0.75
    assert math.isnan(binary_auc([1, 1], [0.2, 0.3]))


def test_logloss_matches_sklearn() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 1000)
    probs = rng.uniform(0.01, 0.99, 1000)
    assert binary_logloss(labels, probs) == pytest.approx(log_loss(labels, probs), abs=1e-12)
    assert binary_logloss([1], [0.0]) == pytest.approx(-math.log(1e-7))


def test_streaming_equals_whole_split() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(10_000, generator=gen)
    labels = (torch.rand(10_000, generator=gen) < torch.sigmoid(logits)).float()
    acc = BinaryMetricAccumulator()
    for start in range(0, 10_000, 777):
        acc.update(logits[start : start + 777], labels[start : start + 777])
    result = acc.compute()
    probs = torch.sigmoid(logits.double()).numpy()
    assert result["rows"] == 10_000
    assert result["auc"] == pytest.approx(roc_auc_score(labels.numpy(), probs), abs=1e-9)
    assert result["logloss"] == pytest.approx(log_loss(labels.numpy(), probs), abs=1e-9)
    assert 0.7 < result["auc"] < 0.8  # logistic labels from N(0,1) logits


def test_empty_accumulator() -> None:
    result = BinaryMetricAccumulator().compute()
    assert result["rows"] == 0 and math.isnan(result["auc"]) and math.isnan(result["logloss"])
