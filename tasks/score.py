"""Batch scoring: stream raw rows through a registered pyfunc into a Parquet file."""

from __future__ import annotations

import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PyFuncModel
from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from flip_core.scoring import ScoringError, check_input, iter_raw_chunks
from tasks.pyfunc import OUTPUT_COLUMN
from tasks.retry import io_retries


class ScoreSummary(BaseModel):
    """What a scoring run wrote."""

    model_uri: str
    input: Path
    output: Path
    rows: int
    chunks: int
    seconds: float


def load_scoring_model(model_uri: str, tracking_uri: str | None = None) -> PyFuncModel:
    """Load a pyfunc by URI (`models:/NAME@champion`, `runs:/...`, a local path).

    `tracking_uri` (default: MLflow's own resolution, MLFLOW_TRACKING_URI) is where `models:/`
    and `runs:/` URIs are looked up; errors name it. A `sqlite:` store that does not exist is an
    error (MLflow would create an empty one and then not find the model in it).
    """
    uri = tracking_uri or mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if model_uri.startswith(("models:/", "runs:/")):
        _check_store(uri)
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:  # mlflow raises several types for a bad URI
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        first = first.removeprefix("RESOURCE_DOES_NOT_EXIST: ")
        where = f" in {uri}" if first.endswith("not found") else f" (tracking URI {uri})"
        raise ScoringError(f"cannot load model {model_uri}: {first}{where}") from exc


def _check_store(uri: str) -> None:
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():
        raise ScoringError(
            f"no MLflow store at {uri} ({path.resolve()} does not exist): point "
            "MLFLOW_TRACKING_URI (or --set mlflow.tracking_uri=...) at the tracking server or "
            "database that holds the registered model"
        )


def score_file(
    model: PyFuncModel,
    input_path: Path,
    output_path: Path,
    chunk_rows: int = 100_000,
    keep: tuple[str, ...] | None = None,
) -> tuple[int, int]:
    """Score `input_path` chunk by chunk into `output_path` (kept columns + probability).

    `keep` defaults to the model's user and item columns (`model_config.id_columns`).
    Written to a temporary file and renamed at the end, so a failed run leaves no partial output.
    Returns (rows, chunks).
    """
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(f".{output_path.name}.partial")
    rows = chunks = 0
    writer: pq.ParquetWriter | None = None
    config = model.model_config or {}
    if keep is None:
        keep = tuple(config.get("id_columns", ()))
    try:
        for frame in iter_raw_chunks(input_path, chunk_rows, _input_types(model)):
            missing = [c for c in keep if c not in frame.columns]
            if missing:
                raise ScoringError(f"input lacks column(s) to keep: {', '.join(missing)}")
            out = frame[list(keep)].copy()
            out[OUTPUT_COLUMN] = _predict(model, frame)
            table = pa.Table.from_pandas(out, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            rows += len(out)
            chunks += 1
        if writer is None:
            raise ScoringError(f"input {input_path} has no rows")
        writer.close()
        writer = None
        tmp.replace(output_path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return rows, chunks


def _input_types(model: PyFuncModel) -> dict[str, str]:
    """The model's input columns typed as dataset-spec types (CSV columns are read so)."""
    schema = model.metadata.get_input_schema()
    if schema is None:
        return {}
    kinds = {"long": "int64", "integer": "int64", "double": "float64", "float": "float64",
             "boolean": "bool", "string": "string", "datetime": "timestamp"}  # fmt: skip
    return {c.name: kinds.get(c.type.name, "string") for c in schema.inputs if c.name}


def _predict(model: PyFuncModel, frame: pd.DataFrame) -> np.ndarray:
    schema = model.metadata.get_input_schema()
    if schema is not None:
        missing = [c for c in schema.input_names() if c not in frame.columns]
        if missing:
            raise ScoringError(f"input lacks column(s) the model needs: {', '.join(missing)}")
    try:
        result = model.predict(frame)
    except MlflowException as exc:  # schema enforcement: missing or mistyped columns
        raise ScoringError(f"input rejected by the model: {_reason(exc.message)}") from None
    if not isinstance(result, pd.DataFrame) or OUTPUT_COLUMN not in result.columns:
        raise ScoringError(f"the model did not return a '{OUTPUT_COLUMN}' column")
    return result[OUTPUT_COLUMN].to_numpy()


def _reason(message: str) -> str:
    """The cause in an MLflow schema error (after its data and schema dumps), one line."""
    text = message.strip()
    cause = text.rsplit("Error:", 1)[-1] if "Error:" in text else text
    return " ".join(cause.split())[:300] or "schema error"


def score(
    model_uri: str,
    input_path: Path,
    output_path: Path,
    chunk_rows: int = 100_000,
    tracking_uri: str | None = None,
    keep: tuple[str, ...] | None = None,
) -> ScoreSummary:
    """Load the model and score one file; returns a summary."""
    start = time.perf_counter()
    check_input(input_path)
    model = load_scoring_model(model_uri, tracking_uri)
    rows, chunks = score_file(model, input_path, output_path, chunk_rows, keep)
    return ScoreSummary(
        model_uri=model_uri,
        input=input_path,
        output=output_path,
        rows=rows,
        chunks=chunks,
        seconds=time.perf_counter() - start,
    )


@task(name="score-raw-rows", **io_retries(2, 10))
def score_task(
    model_uri: str,
    input_path: Path,
    output_path: Path,
    chunk_rows: int = 100_000,
    tracking_uri: str | None = None,
) -> ScoreSummary:
    """Prefect task around `score` (retries transient I/O, never bad input)."""
    summary = score(model_uri, input_path, output_path, chunk_rows, tracking_uri)
    get_run_logger().info(
        "Scored %d rows in %d chunks with %s -> %s (%.1f s)",
        summary.rows,
        summary.chunks,
        model_uri,
        output_path,
        summary.seconds,
    )
    return summary
