"""The nightly retraining flow: raw logs in, a gated, registered FLIP model out.

Stages: prepare raw data -> ingest -> validate -> features -> prompts -> pretrain -> finetune
-> evaluate -> register + gate. Every stage is a task in `tasks/` that exchanges manifests (paths +
content hashes) and caches on them (`tasks.caching.content_cache`), so a rerun after a failure
skips the finished stages and a rerun on unchanged data does nothing new.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.logging import get_run_logger

from flip_core.config import FlipConfig
from flows.params import flow_config
from tasks.artifacts import mlflow_ui_hint, mlflow_ui_link
from tasks.caching import work_dir
from tasks.features import build_features, render_prompts
from tasks.finetune import finetune
from tasks.ingest import ingest_raw, validate_lake
from tasks.launch import TorchrunLaunch
from tasks.pretrain import PRETRAIN_SECTIONS, pretrain
from tasks.publish import PublishedModel, publish_candidate
from tasks.quiet import quiet_progress_bars
from tasks.raw_data import prepare_raw_data
from tasks.tracking import TrackedRun, current_flow_run_id, flow_parent_run

Variant = Literal["flip", "flip_id", "flip_plm"]
FLOW_TIMEOUT_S = 20 * 3600  # a night's run must end before the next night's starts


@flow(name="nightly-retrain", timeout_seconds=FLOW_TIMEOUT_S)
def nightly_retrain(
    config_file: Path | None = None,
    dataset: Path | None = None,
    data_root: Path | None = None,
    raw_dir: Path | None = None,
    synthetic: bool | None = None,
    tracking_uri: str | None = None,
    plm: str | None = None,
    variants: list[Variant] | None = None,
    overrides: list[str] | None = None,
    nproc_per_node: int = 1,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
) -> dict[str, Any]:
    """Run every built stage of the pipeline on one configuration.

    Args:
        config_file: experiment YAML (relative to the working directory), e.g. configs/demo.yaml.
        dataset: dataset spec YAML (`paths.dataset`), e.g. configs/datasets/ml-1m.yaml.
        data_root: where the lake, features and models live (`paths.data_root`).
        raw_dir: the inbox of raw files (`paths.raw_dir`); without it (and without
            `synthetic`) the run fails: there is no synthetic fallback.
        synthetic: train on synthetic data instead (`synth.enabled`; demos and tests): its own
            dataset, so `dataset` must be a `synth-*` spec (e.g.
            configs/datasets/synth-ml-1m.yaml); it never competes with a real one.
        tracking_uri: MLflow tracking/registry URI (`mlflow.tracking_uri`); default: the config
            file's, else the worker's MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.
        plm: pretrained language model, hub name or local path (`plm.name`).
        variants: finetuning variants to train (`finetune.variants`).
        overrides: further `section.key=value` overrides, applied before the parameters above.
        nproc_per_node: training processes per node; more than one (or several nodes) runs
            pretrain and finetune under `torchrun` (DDP: gloo on CPU, nccl on GPU).
        nnodes: nodes taking part in training (each other node runs the logged torchrun line).
        rdzv_endpoint: `host:port` of the torchrun rendezvous, needed when nnodes > 1.
    """
    quiet_progress_bars()
    config = flow_config(
        config_file,
        overrides,
        **{
            "paths.dataset": dataset,
            "paths.data_root": data_root,
            "paths.raw_dir": raw_dir,
            "synth.enabled": synthetic,
            "mlflow.tracking_uri": tracking_uri,
            "plm.name": plm,
            "finetune.variants": variants,
        },
    )
    launch = TorchrunLaunch(
        nproc_per_node=nproc_per_node, nnodes=nnodes, rdzv_endpoint=rdzv_endpoint
    )
    with flow_parent_run(config, "nightly") as parent:
        return _stages(config, parent, launch)


def _stages(config: FlipConfig, parent: TrackedRun, launch: TorchrunLaunch) -> dict[str, Any]:
    """The stages in order, under the flow's parent MLflow run; returns the summary."""
    logger = get_run_logger()
    summary: dict[str, Any] = {}

    raw = prepare_raw_data(config)
    logger.info("Raw data ready: %s (hash %s)", raw.raw_dir, raw.content_hash[:12])
    summary.update(raw_dir=str(raw.raw_dir), raw_hash=raw.content_hash)

    lake = ingest_raw(config, raw)
    validate_lake(config, lake)
    logger.info("Lake ready: %s %s (hash %s)", lake.lake_dir, lake.rows, lake.content_hash[:12])
    summary.update(
        lake_dir=str(lake.lake_dir),
        lake_hash=lake.content_hash,
        lake_rows=lake.rows,
        lake_added=lake.added,
        quarantined=lake.quarantined,
    )

    features = build_features(config, lake.lake_dir)
    prompts = render_prompts(config, features)
    summary.update(features_dir=str(prompts.features_dir), features_hash=prompts.content_hash)
    parent.set_tags({"data_hash": prompts.content_hash, "protocol": prompts.protocol})

    # Pretraining is reused (a cache hit) while data, config and code are unchanged.
    pretrained = pretrain(
        config,
        prompts.features_dir,
        work_dir(config, "pretrain", prompts, sections=PRETRAIN_SECTIONS),
        launch,
    )
    summary.update(
        pretrained_dir=str(pretrained.model_dir), pretrain_world_size=pretrained.world_size
    )

    published = []
    for variant in config.finetune.variants:
        tuned = finetune(
            config,
            prompts.features_dir,
            work_dir(
                config,
                "finetune",
                prompts,
                pretrained,
                variant,
                sections=(*PRETRAIN_SECTIONS, "finetune"),
            ),
            variant,
            pretrained.model_dir,
            launch,
        )
        logger.info("%s: %s", variant, tuned.metrics)
        parent.log_metrics({f"{variant}/{k}": v for k, v in tuned.metrics.items()})
        summary.setdefault("finetune_world_size", {})[variant] = tuned.world_size
        published.append(
            publish_candidate(
                config,
                tuned.model_dir,
                tuned.metrics,
                variant,
                prompts.protocol,
                prompts.content_hash,
                lake.dataset,
                splits_dir=split_build_dir(prompts.features_dir),
            )
        )
    uri = config.mlflow.tracking_uri
    this_run = current_flow_run_id()
    summary.update(
        dataset=lake.dataset,
        models={p.version: ("champion" if p.champion else "challenger") for p in published},
        gate={p.version: _gate_line(p, this_run) for p in published},
        mlflow_runs={p.version: mlflow_ui_link(uri, p.experiment_id, p.run_id) for p in published},
        mlflow_parent_run=mlflow_ui_link(uri, parent.experiment_id, parent.run_id),
        mlflow_ui=mlflow_ui_hint(uri),
        registered_model=f"models:/{config.mlflow.registered_model}@champion",
    )

    parent.log_dict(summary, "summary.json")
    _publish_summary(summary)
    return summary


def split_build_dir(features_dir: Path) -> Path:
    """The split build a feature folder was rendered from (`<splits_dir>/prompts/<key>`), whose
    `splits/{valid,test}.parquet` the champion gate rescores models on."""
    return features_dir.parent.parent


def _gate_line(published: PublishedModel, this_run: str | None) -> str:
    """The gate's reason when this run gated the model; otherwise say that nothing new ran."""
    if published.flow_run_id is None or published.flow_run_id == this_run:
        return published.reason
    return (
        f"no new model (publish-model cached): v{published.version} was registered and gated by "
        f"flow run {published.flow_run_id}; no alias moved in this run"
    )


def _publish_summary(summary: dict[str, Any]) -> None:
    lines = ["# Nightly retrain", "", "| item | value |", "|---|---|"]
    lines += [f"| {key} | `{value}` |" for key, value in summary.items()]
    create_markdown_artifact("\n".join(lines) + "\n", key="nightly-summary")
