"""Batch scoring flow: a registered model (by alias) scores a raw Parquet/CSV file."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.params import flow_config
from tasks.quiet import quiet_progress_bars
from tasks.score import ScoreSummary, score_task


@flow(name="batch-score")
def batch_score(
    input_path: Path,
    output_path: Path,
    model_uri: str | None = None,
    chunk_rows: int = 100_000,
    config_file: Path | None = None,
    overrides: list[str] | None = None,
    tracking_uri: str | None = None,
) -> ScoreSummary:
    """Score raw rows with `model_uri` (default: `models:/<registered_model>@champion`).

    `tracking_uri`: the MLflow registry to load from (default: the config file's, else
    MLFLOW_TRACKING_URI, else sqlite:///mlflow.db).
    """
    quiet_progress_bars()
    config = flow_config(config_file, overrides, **{"mlflow.tracking_uri": tracking_uri})
    uri = model_uri or f"models:/{config.mlflow.registered_model}@champion"
    return score_task(uri, input_path, output_path, chunk_rows, config.mlflow.tracking_uri)
