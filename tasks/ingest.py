"""Tasks: raw files -> validated Parquet lake (`ingest_raw`), whole-lake check (`validate_lake`)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from flip_core.config import FlipConfig
from flip_core.data.build import dataset_spec
from flip_core.hashing import text_sha256
from flip_core.lake import RejectedRunError, ingest_dataset
from flip_core.lake.manifest import MANIFEST_NAME
from flip_core.lake.reports import (
    SourceReport,
    table_counts,
    table_reasons,
    table_root_causes,
)
from flip_core.lake.spec_validate import validate_spec_lake
from tasks.artifacts import publish_validation_report, validation_markdown
from tasks.caching import content_cache
from tasks.locks import lake_lock
from tasks.raw_data import RawDataManifest
from tasks.retry import io_retries

_CODE = ("flip_core/lake", "flip_core/spec.py", "sql/ingest", "tasks/ingest.py")


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
    **io_retries(2, 10),
    timeout_seconds=4 * 3600,
)
def ingest_raw(config: FlipConfig, raw: RawDataManifest) -> LakeSnapshot:
    """Ingest the raw folder into the lake (idempotent: known files add nothing).

    Publishes the `validation-report` artifact; fails (no retry) when the bad share passes
    `ingest.max_bad_share`, leaving the lake as it was and the bad rows in the quarantine.
    The files are read through the dataset spec (`paths.dataset`; lake dataset: its name).
    """
    logger = get_run_logger()
    spec = dataset_spec(config)
    dataset = spec.name
    with lake_lock(config):
        try:
            result = ingest_dataset(raw.raw_dir, config.paths.data_root, spec, config.ingest)
        except RejectedRunError as exc:
            logger.error("%s", exc.summary())
            _publish(config, exc.sources, exc.summary(), dataset)
            raise
    logger.info("%s", result.summary())
    _publish(config, result.sources, result.summary(), dataset)
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
    **io_retries(1, 0),
    timeout_seconds=3600,
    **content_cache("ingest", code=_CODE),
)
def validate_lake(config: FlipConfig, lake: LakeSnapshot) -> dict[str, int]:
    """Check the whole lake (manifest vs files, the spec's column rules, keys); raise if invalid.

    Returns the validated rows per table. Cached on the lake's manifest hash.
    """
    report = validate_spec_lake(config.paths.data_root, dataset_spec(config), config.ingest.duckdb)
    get_run_logger().info("Lake %s valid: %s", report.lake_dir, report.rows)
    return report.rows


def _manifest_hash(root: Path) -> str:
    path = root / MANIFEST_NAME
    return text_sha256(path.read_text(encoding="utf-8") if path.is_file() else "")


def _publish(config: FlipConfig, sources: list[SourceReport], summary: str, dataset: str) -> None:
    """The `validation-report` artifact of a run, from its file reports (a rerun that records no
    new quarantine row still reports every reason)."""
    counts = table_counts(sources)
    per_table = table_reasons(sources)
    reasons: dict[str, int] = {}
    for found in per_table.values():
        for reason, n in found.items():
            reasons[reason] = reasons.get(reason, 0) + n
    read = sum(row["read"] for row in counts.values())
    bad = sum(row["quarantined"] for row in counts.values())
    markdown = validation_markdown(
        dataset,
        counts,
        reasons,
        bad_share=bad / read if read else 0.0,
        limit=config.ingest.max_bad_share,
        table_reasons=per_table,
        root_causes=table_root_causes(sources),
        summary=summary,
    )
    publish_validation_report(dataset, markdown)
