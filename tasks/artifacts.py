"""Prefect artifacts for people: the validation report, metrics against the champion, MLflow links.

Call these from inside a task or flow run; each returns the artifact id. The formatting functions
(`*_markdown`, `mlflow_ui_link`) are pure and can be used anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlparse
from uuid import UUID

from prefect.artifacts import create_link_artifact, create_markdown_artifact

VALIDATION_KEY = "validation-report"
METRICS_KEY = "metrics-vs-champion"
MLFLOW_KEY = "mlflow-run"
UI_URL_ENV = "FLIP_MLFLOW_UI_URL"
DEFAULT_UI_URL = "http://127.0.0.1:5000"


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4f}"


def validation_markdown(
    dataset: str,
    counts: Mapping[str, Mapping[str, int]],
    reasons: Mapping[str, int],
    bad_share: float | None = None,
    limit: float | None = None,
    *,
    table_reasons: Mapping[str, Mapping[str, int]] | None = None,
    root_causes: Mapping[str, Mapping[str, int]] | None = None,
    summary: str | None = None,
    top: int = 10,
) -> str:
    """Markdown: rows read/added/quarantined/skipped per table, the quarantine reasons with
    counts (per table when `table_reasons` is given: its top `top`), the root causes of
    dependants' quarantine per table, and the run summary as printed by the CLI."""
    columns = sorted({c for row in counts.values() for c in row})
    lines = [f"# Validation report: `{dataset}`", ""]
    if bad_share is not None:
        verdict = "" if limit is None else (" (limit " + f"{limit:.2%})")
        lines += [f"Bad share: **{bad_share:.3%}**{verdict}", ""]
    lines += ["| table | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for table, row in sorted(counts.items()):
        lines.append(f"| {table} | " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    lines += ["", "## Quarantine reasons", ""]
    if table_reasons is not None:
        shown = {t: r for t, r in table_reasons.items() if r}
        for table, found in shown.items():
            lines += [f"### {table}", "", "| reason | rows |", "|---|---|"]
            ranked = sorted(found.items(), key=lambda kv: -kv[1])
            lines += [f"| {_cell(r)} | {n:,} |" for r, n in ranked[:top]]
            if len(ranked) > top:
                lines.append(f"| ({len(ranked) - top} more reasons) | |")
            lines.append("")
        if not shown:
            lines.append("None: every row passed validation.")
    elif reasons:
        lines += ["| reason | rows |", "|---|---|"]
        lines += [f"| {r} | {n:,} |" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    else:
        lines.append("None: every row passed validation.")
    causes = {t: c for t, c in (root_causes or {}).items() if c}
    if causes:
        lines += ["", "## Root causes", "", "Rows quarantined because of a row of another table:"]
        lines += ["", "| table | root cause | rows |", "|---|---|---|"]
        for table, found in causes.items():
            ranked = sorted(found.items(), key=lambda kv: -kv[1])
            lines += [f"| {table} | {_cell(c)} | {n:,} |" for c, n in ranked[:top]]
    if summary:
        lines += ["", "## Run summary", "", "```", summary, "```"]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """`text` safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def metrics_markdown(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    decision: str,
    title: str = "Challenger vs champion",
) -> str:
    """Markdown table of each metric for the challenger, the champion and their difference."""
    lines = [f"# {title}", "", f"**Decision:** {decision}", ""]
    lines += ["| metric | challenger | champion | delta |", "|---|---|---|---|"]
    for name in sorted(set(challenger) | set(champion or {})):
        new = challenger.get(name)
        old = (champion or {}).get(name)
        delta = None if new is None or old is None else new - old
        sign = "+" if delta is not None and delta > 0 else ""
        shown = "-" if delta is None else f"{sign}{delta:.4f}"
        lines.append(f"| {name} | {_fmt(new)} | {_fmt(old)} | {shown} |")
    if champion is None:
        lines += ["", "No champion yet: this is the first model on this protocol."]
    return "\n".join(lines) + "\n"


def mlflow_ui_link(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """URL of a run in the MLflow UI (an http tracking server, or `FLIP_MLFLOW_UI_URL`)."""
    base = os.environ.get(UI_URL_ENV)
    if base is None:
        scheme = urlparse(tracking_uri).scheme
        base = tracking_uri if scheme in {"http", "https"} else DEFAULT_UI_URL
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_ui_hint(tracking_uri: str) -> str:
    """How to browse `tracking_uri`: a server's own UI, or `mlflow ui` on a local store."""
    if urlparse(tracking_uri).scheme in {"http", "https"}:
        return f"open {tracking_uri} in a browser (the tracking server serves the MLflow UI)"
    return f"mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --port 5000"


def publish_validation_report(dataset: str, markdown: str) -> UUID:
    """Artifact `validation-report` of `dataset` (its text from `validation_markdown`)."""
    return cast(
        UUID,
        create_markdown_artifact(
            markdown, key=VALIDATION_KEY, description=f"Validation of {dataset}"
        ),
    )


def publish_metrics_table(
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    decision: str,
    title: str = "Challenger vs champion",
) -> UUID:
    """Artifact `metrics-vs-champion`: the new model's metrics beside the champion's."""
    text = metrics_markdown(challenger, champion, decision, title)
    return cast(UUID, create_markdown_artifact(text, key=METRICS_KEY, description=decision))


def publish_mlflow_link(
    tracking_uri: str,
    experiment_id: str,
    run_id: str,
    model_name: str | None = None,
    version: str | None = None,
) -> UUID:
    """Artifact `mlflow-run`: a link to the run (and the registered version) in the MLflow UI."""
    link = mlflow_ui_link(tracking_uri, experiment_id, run_id)
    what = f"run {run_id}" + (f", model {model_name} v{version}" if model_name else "")
    description = f"MLflow {what} (tracking URI `{tracking_uri}`; {mlflow_ui_hint(tracking_uri)})"
    artifact = create_link_artifact(link, link_text=what, key=MLFLOW_KEY, description=description)
    return cast(UUID, artifact)
