"""Evaluation and training plots. Pure functions returning matplotlib figures.

Figures are built with the object API (`Figure`, no pyplot), so no GUI backend or global figure
state is involved and a figure is freed once it goes out of scope.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_auc_score, roc_curve

Series = Sequence[tuple[int, float]]


def roc_figure(labels: np.ndarray, probs: np.ndarray, title: str = "ROC curve") -> Figure:
    """ROC curve with its AUC in the legend; needs both classes in `labels`."""
    fpr, tpr, _ = roc_curve(labels, probs)
    auc = roc_auc_score(labels, probs)
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.plot(fpr, tpr, label=f"AUC = {auc:.4f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def reliability_bins(
    labels: np.ndarray, probs: np.ndarray, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width probability bin: mean predicted, observed click rate, row count."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(probs, edges[1:-1]), 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    pred_sum = np.bincount(idx, weights=probs, minlength=n_bins)
    pos_sum = np.bincount(idx, weights=labels.astype(float), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pred_sum / counts, pos_sum / counts, counts


def reliability_figure(
    labels: np.ndarray, probs: np.ndarray, n_bins: int = 10, title: str = "Calibration"
) -> Figure:
    """Reliability diagram (observed vs predicted click rate) with a row-count histogram."""
    mean_pred, observed, counts = reliability_bins(labels, probs, n_bins)
    keep = counts > 0
    ece = float(np.sum(counts[keep] * np.abs(mean_pred[keep] - observed[keep])) / counts.sum())
    fig = Figure(figsize=(5, 6))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    top.plot(mean_pred[keep], observed[keep], marker="o", label=f"model (ECE = {ece:.4f})")
    top.set(ylabel="observed click rate", title=title, xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left")
    bottom.bar((np.arange(n_bins) + 0.5) / n_bins, counts, width=1.0 / n_bins, color="tab:grey")
    bottom.set(xlabel="predicted click probability", ylabel="rows")
    fig.tight_layout()
    return fig


def curves_figure(series: Mapping[str, Series], title: str, ylabel: str) -> Figure:
    """Line plot of several (step, value) series, e.g. train and valid loss of one objective."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, points in sorted(series.items()):
        if points:
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, marker="." if len(points) < 50 else None, label=name)
    ax.set(xlabel="step", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def fusion_weight_figure(points: Series) -> Figure:
    """The FLIP fusion weight a = sigmoid(w) over training steps (share of the ID logit)."""
    fig = curves_figure({"a (ID share)": points}, "FLIP fusion weight", "a")
    fig.axes[0].set_ylim(0, 1)
    return fig
