"""Tasks: protocol splits + vocabularies (`build_features`) and prompt features (`render_prompts`).

Thin wrappers around `flip_core.data.build`; they exchange paths + content hashes.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger
from pydantic import BaseModel

from flip_core.config import FlipConfig
from flip_core.data.build import build_splits_from_config, manifest_lines, render_from_config
from flip_core.data.render import read_manifest
from tasks.caching import content_cache
from tasks.retry import io_retries

_CODE = ("flip_core/data", "flip_core/lake", "sql/features", "tasks/features.py")


class FeaturesManifest(BaseModel):
    """A protocol's split files and vocabularies."""

    splits_dir: Path
    protocol: str
    data_hash: str
    content_hash: str


class PromptsManifest(BaseModel):
    """A built feature folder (train/valid/test.parquet, feature_map.json, manifest.json)."""

    features_dir: Path
    protocol: str
    content_hash: str


@task(
    name="build-features",
    **io_retries(1),
    **content_cache("features", "ingest", code=_CODE),
)
def build_features(config: FlipConfig, lake_dir: Path) -> FeaturesManifest:
    """Cut the lake into the configured protocol's splits and fit the vocabularies on train."""
    build = build_splits_from_config(config, lake_dir)
    get_run_logger().info(
        "Splits of %s in %s (%s)",
        build.protocol,
        build.splits_dir,
        "cached" if build.cached else "built",
    )
    return FeaturesManifest(
        splits_dir=build.splits_dir,
        protocol=build.protocol,
        data_hash=build.data_hash,
        content_hash=build.splits_hash,
    )


@task(
    name="render-prompts",
    **io_retries(1),
    **content_cache("features", "plm", code=_CODE),
)
def render_prompts(config: FlipConfig, features: FeaturesManifest) -> PromptsManifest:
    """Render and tokenize the prompts of every split; write the manifest."""
    build = render_from_config(config, features.splits_dir)
    logger = get_run_logger()
    for line in manifest_lines(read_manifest(build.features_dir)):
        logger.info(line)
    return PromptsManifest(
        features_dir=build.features_dir, protocol=features.protocol, content_hash=build.prompts_hash
    )
