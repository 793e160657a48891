"""flip_core: the FLIP model library (pure Python + torch/transformers; no Prefect, no MLflow)."""

__version__ = "0.1.0"
