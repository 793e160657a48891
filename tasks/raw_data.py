"""Task: make sure raw MovieLens-style files exist (the given inbox, or synthetic ones on request).

There is no synthetic fallback: a run with neither `paths.raw_dir` nor `synth.enabled` fails with
`NoRawDataError` (a scheduled deployment run must never train on made-up data). Synthetic data is
its own dataset (`synth-<dataset>`, see `flip_core.config`), so it never competes with real data.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from flip_core.config import FlipConfig
from flip_core.data.synth import write_synthetic_movielens
from flip_core.hashing import tree_sha256
from tasks.caching import content_cache
from tasks.faults import inject_faults
from tasks.retry import retry_transient

REQUIRED_FILES = ("users.dat", "movies.dat")


class NoRawDataError(ValueError):
    """Neither a raw folder nor synthetic data was asked for."""


NO_RAW_DATA = (
    "no raw data: this run has no raw_dir (the flow/deployment parameter raw_dir, "
    "`flip run --raw-dir DIR`, or paths.raw_dir in the config) and synthetic data was not asked "
    "for (synth.enabled=true, `flip run --synthetic`); refusing to train on synthetic data by "
    "default"
)


class RawDataManifest(BaseModel):
    """Where the raw files are and a hash of their content."""

    raw_dir: Path
    content_hash: str
    synthetic: bool


@task(
    name="prepare-raw-data",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_transient,
    timeout_seconds=1800,
    **content_cache("paths", "synth", code=("flip_core/data/synth.py", "tasks/raw_data.py")),
)
def prepare_raw_data(config: FlipConfig) -> RawDataManifest:
    """Return the configured raw folder, or, with `synth.enabled`, write a seeded synthetic
    dataset under the data root; fail (`NoRawDataError`) when neither is configured.

    Cached on the raw folder's content (or the synthetic settings), so an unchanged inbox is not
    hashed twice in a run and a rerun skips it.
    """
    logger = get_run_logger()
    inject_faults("prepare-raw-data")
    if config.paths.raw_dir is not None:
        raw_dir = config.paths.raw_dir
        _check_raw_dir(raw_dir)
        logger.info("Using raw data in %s", raw_dir)
        return RawDataManifest(raw_dir=raw_dir, content_hash=tree_sha256(raw_dir), synthetic=False)
    if not config.synth.enabled:
        raise NoRawDataError(NO_RAW_DATA)
    s = config.synth
    raw_dir = (
        config.paths.data_root
        / "raw"
        / f"synthetic-u{s.users}-m{s.movies}-r{s.ratings_per_user}-s{s.seed}"
    )
    if not (raw_dir / "ratings.dat").is_file():
        counts = write_synthetic_movielens(raw_dir, s.users, s.movies, s.ratings_per_user, s.seed)
        logger.info("Wrote synthetic data to %s: %s", raw_dir, counts)
    return RawDataManifest(raw_dir=raw_dir, content_hash=tree_sha256(raw_dir), synthetic=True)


def _check_raw_dir(raw_dir: Path) -> None:
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"raw data folder {raw_dir} does not exist")
    missing = [name for name in REQUIRED_FILES if not (raw_dir / name).is_file()]
    if not any(raw_dir.glob("ratings*.dat*")):
        missing.append("ratings.dat (or ratings*.dat.gz)")
    if missing:
        raise FileNotFoundError(f"raw data folder {raw_dir} lacks: {', '.join(missing)}")
