"""The MLflow pyfunc that serves click probabilities for raw log rows.

The logged model holds the saved model directory (config.json, model.safetensors,
feature_map.json) as an artifact and the small `tasks/pyfunc_model.py` as "model from code", so
nothing is pickled. Its code comes from the installed `flip-ctr` package (the model records the
exact version in its requirements and the git commit in its registry tags): serve it with
`--env-manager local` from an environment where the project is installed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, Schema

from flip_core.data.feature_map import FeatureMap
from flip_core.scoring import RawRowScorer, example_rows, id_columns

MODEL_DIR_ARTIFACT = "model_dir"
OUTPUT_COLUMN = "probability"
ENTRY_POINT = Path(__file__).with_name("pyfunc_model.py")

_COLUMN_TYPES = {
    "int32": "long",
    "int64": "long",
    "float64": "double",
    "bool": "boolean",
    "string": "string",
    "timestamp": "datetime",
}


def raw_row_signature(feature_map: FeatureMap) -> ModelSignature:
    """Input: the raw columns the dataset's fields read; output: one click probability per row."""
    inputs = Schema(
        [ColSpec(_COLUMN_TYPES[kind], name) for name, kind in feature_map.columns.items()]
    )
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", OUTPUT_COLUMN)]))


class RawRowCTRModel(PythonModel):
    """pyfunc: raw rows (DataFrame) -> DataFrame with a `probability` column."""

    def __init__(self) -> None:
        self.scorer: RawRowScorer | None = None

    def load_context(self, context: PythonModelContext) -> None:
        """Load the model directory artifact; batch size and prompt settings from model_config."""
        config = context.model_config or {}
        self.scorer = RawRowScorer.from_pretrained(
            context.artifacts[MODEL_DIR_ARTIFACT],
            batch_size=int(config.get("batch_size", 8192)),
            max_length=int(config.get("max_length", 128)),
        )

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Click probabilities for raw rows; unseen ids score through the OOV embedding."""
        assert self.scorer is not None, "load_context was not called"
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return pd.DataFrame({OUTPUT_COLUMN: self.scorer.predict_proba(frame)})


def save_pyfunc(
    model_dir: Path, out_dir: Path, batch_size: int = 8192, prompt: dict[str, Any] | None = None
) -> Path:
    """Write the pyfunc model (MLmodel, signature, input example, requirements) to `out_dir`.

    The input schema and example come from the model's `feature_map.json` (the dataset spec);
    `prompt` ({"max_length"}) must match the features the model was trained on; it only matters
    for models with a language model (`flip`, `flip_plm`). `model_config.id_columns` names the
    user and item columns that batch scoring keeps beside the scores by default.
    """
    from importlib.metadata import version

    feature_map = FeatureMap.load(model_dir)
    mlflow.pyfunc.save_model(
        path=str(out_dir),
        python_model=str(ENTRY_POINT),
        artifacts={MODEL_DIR_ARTIFACT: str(model_dir)},
        signature=raw_row_signature(feature_map),
        input_example=example_rows(feature_map),
        model_config={
            "batch_size": batch_size,
            "dataset": feature_map.dataset,
            "id_columns": id_columns(feature_map),
            **(prompt or {}),
        },
        pip_requirements=[f"flip-ctr=={version('flip-ctr')}", f"mlflow=={mlflow.__version__}"],
    )
    return out_dir


def log_pyfunc(
    client: mlflow.MlflowClient,
    run_id: str,
    model_dir: Path,
    artifact_path: str = "model",
    batch_size: int = 8192,
    prompt: dict[str, Any] | None = None,
) -> str:
    """Save the pyfunc and upload it to run `run_id`; returns its `runs:/` URI."""
    with tempfile.TemporaryDirectory(prefix="flip-pyfunc-") as tmp:
        local = save_pyfunc(model_dir, Path(tmp) / artifact_path, batch_size, prompt)
        client.log_artifacts(run_id, str(local), artifact_path)
    return f"runs:/{run_id}/{artifact_path}"
