"""The ingest flow: raw files (or synthetic data, when asked for) -> validated Parquet lake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow
from prefect.logging import get_run_logger

from flows.params import flow_config
from tasks.ingest import ingest_raw, validate_lake
from tasks.quiet import quiet_progress_bars
from tasks.raw_data import prepare_raw_data


@flow(name="ingest", timeout_seconds=6 * 3600)
def ingest_flow(
    config_file: Path | None = None,
    dataset: Path | None = None,
    data_root: Path | None = None,
    raw_dir: Path | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Ingest the raw inbox into the lake, then validate the whole lake.

    Args:
        config_file: experiment YAML, e.g. configs/demo.yaml.
        dataset: dataset spec YAML (`paths.dataset`), e.g. configs/datasets/ml-1m.yaml.
        data_root: where the lake lives (`paths.data_root`).
        raw_dir: the inbox of raw files (`paths.raw_dir`); required unless `synth.enabled`.
        overrides: further `section.key=value` overrides, applied before the parameters above.
    """
    quiet_progress_bars()
    config = flow_config(
        config_file,
        overrides,
        **{
            "paths.dataset": dataset,
            "paths.data_root": data_root,
            "paths.raw_dir": raw_dir,
        },
    )
    raw = prepare_raw_data(config)
    lake = ingest_raw(config, raw)
    validate_lake(config, lake)
    get_run_logger().info("Lake %s: %s rows", lake.lake_dir, lake.rows)
    return {
        "raw_dir": str(raw.raw_dir),
        "lake_dir": str(lake.lake_dir),
        "lake_hash": lake.content_hash,
        "lake_rows": lake.rows,
        "lake_added": lake.added,
        "quarantined": lake.quarantined,
    }
