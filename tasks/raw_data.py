"""Task: make sure the dataset's raw files exist (the given inbox, or synthetic ones on request).

There is no synthetic fallback: a run with neither `paths.raw_dir` nor `synth.enabled` fails with
`NoRawDataError` (a scheduled deployment run must never train on made-up data). Synthetic data is
its own dataset: `synth.enabled` needs a dataset spec named `synth-*` (e.g.
configs/datasets/synth-ml-1m.yaml), so a model of synthetic data never competes with real data.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from flip_core.config import SYNTHETIC_PREFIX, FlipConfig
from flip_core.data.build import dataset_spec
from flip_core.data.synth import write_synthetic_movielens
from flip_core.data.synth_apps import write_synthetic_apps
from flip_core.hashing import tree_sha256
from flip_core.spec import DatasetSpec
from tasks.caching import content_cache
from tasks.faults import inject_faults
from tasks.retry import io_retries

APPS_SCHEMA = "synth-apps"  # the dataset whose synthetic data is the app-usage log


class NoRawDataError(ValueError):
    """Neither a raw folder nor synthetic data was asked for."""


NO_RAW_DATA = (
    "no raw data: this run has no raw_dir (the flow/deployment parameter raw_dir, "
    "`flip run --raw-dir DIR`, or paths.raw_dir in the config) and synthetic data was not asked "
    "for (synth.enabled=true, `flip run --synthetic`); refusing to train on synthetic data by "
    "default"
)


def synthetic_spec_error(spec_name: str) -> str | None:
    """Why synthetic data may not be written as dataset `spec_name` (None: it may)."""
    if spec_name.startswith(SYNTHETIC_PREFIX):
        return None
    return (
        f"synthetic data is its own dataset, never {spec_name!r}: with synth.enabled "
        f"(`flip run --synthetic`) choose a {SYNTHETIC_PREFIX}* dataset spec, e.g. --dataset "
        "configs/datasets/synth-ml-1m.yaml (paths.dataset)"
    )


class RawDataManifest(BaseModel):
    """Where the raw files are and a hash of their content."""

    raw_dir: Path
    content_hash: str
    synthetic: bool


@task(
    name="prepare-raw-data",
    **io_retries(2),
    timeout_seconds=1800,
    **content_cache(
        "paths",
        "synth",
        code=("flip_core/data/synth.py", "flip_core/data/synth_apps.py", "tasks/raw_data.py"),
    ),
)
def prepare_raw_data(config: FlipConfig) -> RawDataManifest:
    """Return the configured raw folder, or, with `synth.enabled`, write a seeded synthetic
    dataset under the data root; fail (`NoRawDataError`) when neither is configured.

    Cached on the raw folder's content (or the synthetic settings), so an unchanged inbox is not
    hashed twice in a run and a rerun skips it.
    """
    logger = get_run_logger()
    inject_faults("prepare-raw-data")
    spec = dataset_spec(config)
    if config.paths.raw_dir is not None:
        raw_dir = config.paths.raw_dir
        _check_raw_dir(raw_dir, spec)
        logger.info("Using raw data in %s", raw_dir)
        return RawDataManifest(raw_dir=raw_dir, content_hash=tree_sha256(raw_dir), synthetic=False)
    if not config.synth.enabled:
        raise NoRawDataError(NO_RAW_DATA)
    wrong = synthetic_spec_error(spec.name)
    if wrong is not None:
        raise NoRawDataError(wrong)
    s = config.synth
    sizes = f"u{s.users}-i{s.items}-e{s.events_per_user}-s{s.seed}"
    raw_dir = config.paths.data_root / "raw" / f"{spec.name}-synthetic-{sizes}"
    if not raw_dir.is_dir():  # written beside, then renamed: a folder that exists is complete
        partial = raw_dir.with_name(raw_dir.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        if spec.name == APPS_SCHEMA:
            counts: object = write_synthetic_apps(
                partial, s.users, s.items, s.events_per_user, s.seed
            )
        else:
            counts = write_synthetic_movielens(partial, s.users, s.items, s.events_per_user, s.seed)
        partial.rename(raw_dir)
        logger.info("Wrote synthetic data to %s: %s", raw_dir, counts)
    return RawDataManifest(raw_dir=raw_dir, content_hash=tree_sha256(raw_dir), synthetic=True)


def _check_raw_dir(raw_dir: Path, spec: DatasetSpec) -> None:
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"raw data folder {raw_dir} does not exist")
    events = spec.table(spec.events)
    if not any(p.is_file() for glob in events.files for p in raw_dir.glob(glob)):
        raise FileNotFoundError(
            f"raw data folder {raw_dir} holds no {spec.events} file of dataset {spec.name!r} "
            f"(files matching {events.files})"
        )
