"""Tasks: raw files -> validated Parquet lake (`ingest_raw`), whole-lake check (`validate_lake`)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from flip_core.config import FlipConfig
from flip_core.hashing import text_sha256, tree_sha256
from flip_core.lake import BadShareError, IngestResult, ingest_raw_dir
from flip_core.lake.ingest import quarantine_reasons, table_counts
from flip_core.lake.manifest import MANIFEST_NAME
from flip_core.lake.spec_ingest import ingest_spec_dir
from flip_core.lake.spec_validate import validate_spec_lake
from flip_core.lake.specs import load_spec
from flip_core.lake.validate import validate_lake as check_lake
from tasks.artifacts import publish_validation_report
from tasks.caching import content_cache
from tasks.locks import lake_lock
from tasks.raw_data import RawDataManifest
from tasks.retry import retry_transient

_CODE = ("flip_core/lake", "sql/ingest", "tasks/ingest.py")


class LakeSnapshot(BaseModel):
    """The lake after a step: where it is, a hash of its manifest, rows per table."""

    lake_dir: Path
    dataset: str
    content_hash: str
    rows: dict[str, int]
    added: dict[str, int] = {}
    quarantined: int = 0


@task(
    name="ingest-raw",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=retry_transient,
    timeout_seconds=4 * 3600,
)
def ingest_raw(config: FlipConfig, raw: RawDataManifest) -> LakeSnapshot:
    """Ingest the raw folder into the lake (idempotent: known files add nothing).

    Publishes the `validation-report` artifact; fails (no retry) when the bad share passes
    `ingest.max_bad_share`, leaving the lake as it was and the bad rows in the quarantine.
    With `ingest.spec` the files are read through that dataset spec (lake dataset: its name).
    """
    logger = get_run_logger()
    dataset = lake_dataset(config)
    with lake_lock(config):
        try:
            result = ingest_files(config, raw.raw_dir)
        except BadShareError as exc:
            _publish(config, exc.run_id, table_counts(exc.sources), dataset)
            raise
    logger.info("%s", result.summary())
    _publish(config, result.run_id, table_counts(result.sources), dataset)
    return LakeSnapshot(
        lake_dir=result.lake_dir,
        dataset=dataset,
        content_hash=_manifest_hash(result.lake_dir),
        rows=result.table_rows,
        added={t: result.added(t) for t in result.table_rows},
        quarantined=result.quarantined(),
    )


@task(
    name="validate-lake",
    retries=1,
    retry_condition_fn=retry_transient,
    timeout_seconds=3600,
    **content_cache("ingest", code=_CODE),
)
def validate_lake(config: FlipConfig, lake: LakeSnapshot) -> dict[str, int]:
    """Check the whole lake (manifest vs files, pandera models, references); raise if invalid.

    Returns the validated rows per table. Cached on the lake's manifest hash.
    """
    data_root, duck = config.paths.data_root, config.ingest.duckdb
    if config.ingest.spec is not None:
        report = validate_spec_lake(data_root, load_spec(config.ingest.spec), duck)
    else:
        report = check_lake(data_root, config.ingest.dataset, duck)
    get_run_logger().info("Lake %s valid: %s", report.lake_dir, report.rows)
    return report.rows


@task(name="spec-inbox", timeout_seconds=1800)
def spec_inbox(config: FlipConfig) -> RawDataManifest:
    """The raw folder of a dataset-spec ingest (`paths.raw_dir`), with a hash of its content."""
    raw_dir = config.paths.raw_dir
    if raw_dir is None or not raw_dir.is_dir():
        raise FileNotFoundError(f"ingest.spec needs paths.raw_dir, a folder (got {raw_dir})")
    return RawDataManifest(raw_dir=raw_dir, content_hash=tree_sha256(raw_dir), synthetic=False)


def lake_dataset(config: FlipConfig) -> str:
    """The lake dataset of an ingest: the spec's name with `ingest.spec`, else ingest.dataset."""
    spec = config.ingest.spec
    return load_spec(spec).name if spec is not None else config.ingest.dataset


def ingest_files(config: FlipConfig, raw_dir: Path) -> IngestResult:
    """Ingest `raw_dir` into the lake as `config` says (through `ingest.spec` when set)."""
    data_root, spec = config.paths.data_root, config.ingest.spec
    if spec is not None:
        return ingest_spec_dir(raw_dir, data_root, load_spec(spec), config.ingest)
    return ingest_raw_dir(raw_dir, data_root, config.ingest)


def _manifest_hash(root: Path) -> str:
    path = root / MANIFEST_NAME
    return text_sha256(path.read_text(encoding="utf-8") if path.is_file() else "")


def _publish(
    config: FlipConfig, run_id: str, counts: dict[str, dict[str, int]], dataset: str
) -> None:
    reasons = quarantine_reasons(config.paths.data_root, dataset, run_id, config.ingest.duckdb)
    read = sum(row["read"] for row in counts.values())
    bad = sum(row["quarantined"] for row in counts.values())
    publish_validation_report(
        dataset,
        counts,
        reasons,
        bad_share=bad / read if read else 0.0,
        limit=config.ingest.max_bad_share,
    )
