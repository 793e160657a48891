"""Task `publish-model`: track a finetuned model in MLflow, register it, gate it, show the result.

Opens an MLflow run `publish-<variant>` (tagged with the Prefect flow-run id; a child of the
flow's parent run), logs the resolved config and the model's metrics, registers the model
through `tasks.registry.publish_model` under the registry lock, and publishes the
`metrics-vs-champion` and `mlflow-run` artifacts. Cached on the model's content hash: a rerun
on unchanged data registers nothing and moves no alias (its result names the flow run that did
publish, `flow_run_id`, so a summary can tell an old decision from a new one).
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from flip_core.config import FlipConfig
from tasks.artifacts import publish_metrics_table, publish_mlflow_link
from tasks.caching import content_cache
from tasks.locks import registry_lock
from tasks.registry import current_champion, model_metrics, publish_model
from tasks.retry import io_retries
from tasks.tracking import configure, current_flow_run_id, log_config, tracked_run


class PublishedModel(BaseModel):
    """A registered model version and the gate's verdict."""

    name: str
    version: str
    run_id: str
    experiment_id: str
    model_uri: str
    champion: bool
    reason: str
    content_hash: str
    dataset: str = ""
    flow_run_id: str | None = None


@task(
    name="publish-model",
    **io_retries(2, 10),
    timeout_seconds=3600,
    **content_cache("mlflow", "gate"),
)
def publish_candidate(
    config: FlipConfig,
    model_dir: Path,
    metrics: dict[str, float],
    variant: str,
    protocol: str,
    data_hash: str,
    dataset: str,
    splits_dir: Path | None = None,
) -> PublishedModel:
    """Log, register and gate `model_dir` (trained on `dataset`); returns the version and
    whether it became champion. `splits_dir`: the split build of `model_dir`'s features, whose
    current valid/test rows the gate rescores the champion and the challenger on."""
    client, experiment_id = configure(config.mlflow)
    name = config.mlflow.registered_model
    before = current_champion(client, name)
    evaluation = model_metrics(metrics)
    champion_metrics = (
        {k: float(v) for k, v in before.tags.items() if k in evaluation and _is_float(v)}
        if before is not None
        else None
    )
    tags = {"variant": variant, "dataset": dataset}
    with tracked_run(config, run_name=f"publish-{variant}", tags=tags) as run:
        log_config(run, config)
        run.log_metrics(evaluation)
        with registry_lock(config):
            result = publish_model(
                config,
                run.run_id,
                model_dir,
                metrics,
                protocol,
                data_hash,
                dataset,
                variant,
                splits_dir=splits_dir,
            )
    verdict = "new champion" if result.champion else "champion kept"
    get_run_logger().info("%s v%s: %s (%s)", result.name, result.version, verdict, result.reason)
    if champion_metrics is not None and result.rescored_champion is not None:
        # the gate metrics as the gate compared them: both models scored on the current rows
        current = " (current rows)"
        champion_metrics.update({k + current: v for k, v in result.rescored_champion.items()})
        evaluation.update({k + current: v for k, v in (result.rescored_challenger or {}).items()})
    title = f"{name} v{result.version} ({variant}, {dataset}) vs champion" + (
        f" v{before.version}" if before is not None else ""
    )
    publish_metrics_table(evaluation, champion_metrics, f"{verdict}: {result.reason}", title)
    publish_mlflow_link(
        config.mlflow.tracking_uri, experiment_id, run.run_id, result.name, result.version
    )
    return PublishedModel(
        name=result.name,
        version=result.version,
        run_id=run.run_id,
        experiment_id=experiment_id,
        model_uri=result.model_uri,
        champion=result.champion,
        reason=result.reason,
        content_hash=f"{result.name}:{result.version}",
        dataset=dataset,
        flow_run_id=current_flow_run_id(),
    )


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
