"""A short markdown model card for a trained CTR model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class ModelCardInfo:
    """What the card says about one trained model."""

    name: str
    variant: str
    protocol: str
    data_hash: str
    code_version: str
    metrics: Mapping[str, float]
    settings: Mapping[str, object] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dataset: str = "unknown dataset"
    inputs: Sequence[str] = ()
    label: str = "the dataset spec's label rule"


def render_model_card(info: ModelCardInfo) -> str:
    """Markdown: purpose, inputs, data, metrics table, settings, limitations."""
    lines = [
        f"# Model card: {info.name} ({info.variant})",
        "",
        f"Predicts the click probability (label: {info.label}) of one raw log row of dataset "
        f"`{info.dataset}`, from its columns: {', '.join(info.inputs) or 'see the signature'}. "
        "Values never seen in training map to an out-of-vocabulary id.",
        "",
        "## Data",
        f"- dataset: `{info.dataset}`",
        f"- protocol: `{info.protocol}` (selected on valid, test reported)",
        f"- data hash: `{info.data_hash}`",
        f"- code version: `{info.code_version}`",
        "",
        "## Metrics",
        "| metric | value |",
        "|---|---|",
        *[f"| {key} | {value:.5f} |" for key, value in sorted(info.metrics.items())],
    ]
    if info.settings:
        lines += ["", "## Settings", *[f"- {k}: `{v}`" for k, v in info.settings.items()]]
    lines += [
        "",
        "## Limitations",
        f"- Trained on `{info.dataset}` only; other logs need their own spec and training.",
        "- Users or items unseen in training rely on their side features only (cold start).",
        *[f"- {note}" for note in info.notes],
        "",
    ]
    return "\n".join(lines)
