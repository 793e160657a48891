"""The nightly retraining flow: raw logs in, a gated, registered FLIP model out.

Stages (those not yet built are listed in the README's roadmap):
prepare raw data -> ingest -> validate -> features -> prompts -> pretrain -> finetune
-> evaluate -> register + gate.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.logging import get_run_logger

from flip_core.config import load_config
from tasks.raw_data import prepare_raw_data


@flow(name="nightly-retrain")
def nightly_retrain(
    config_file: Path | None = None,
    data_root: Path | None = None,
    raw_dir: Path | None = None,
    overrides: list[str] | None = None,
) -> dict[str, str]:
    """Run every built stage of the pipeline on one configuration."""
    logger = get_run_logger()
    extra = list(overrides or [])
    if data_root is not None:
        extra.append(f"paths.data_root={data_root}")
    if raw_dir is not None:
        extra.append(f"paths.raw_dir={raw_dir}")
    config = load_config(config_file, extra)

    raw = prepare_raw_data(config)

    logger.info("Raw data ready: %s (hash %s)", raw.raw_dir, raw.content_hash[:12])
    return {"raw_dir": str(raw.raw_dir), "raw_hash": raw.content_hash}
