"""MLflow "model from code" entry point: the pyfunc class is imported, never pickled."""

from mlflow.models import set_model

from tasks.pyfunc import RawRowCTRModel

set_model(RawRowCTRModel())
