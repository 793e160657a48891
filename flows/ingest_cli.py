"""`flip data ingest` and `flip data download`: raw files -> validated lake; GroupLens fetch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flip_core.config import ConfigError, FlipConfig, load_config
from flows.console import fail
from flows.params import named_overrides

console = Console(width=200)


def _config(config: Path | None, overrides: list[str], **named: object) -> FlipConfig:
    try:
        return load_config(config, [*overrides, *named_overrides(**named)])
    except ConfigError as exc:
        raise fail(str(exc), code=2, label="config error") from None


def ingest_command(
    dataset: Annotated[
        Path | None,
        typer.Option(
            help="Dataset spec YAML (default: paths.dataset, configs/datasets/ml-1m.yaml)."
        ),
    ] = None,
    raw_dir: Annotated[
        Path | None, typer.Option(help="Folder of raw files the dataset spec reads.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Experiment YAML.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Override one key (repeatable).")
    ] = None,
    data_root: Annotated[Path | None, typer.Option(help="Override paths.data_root.")] = None,
    ingest_date: Annotated[
        str | None, typer.Option(help="Lake partition YYYY-MM-DD (default: today, UTC).")
    ] = None,
    validate: Annotated[bool, typer.Option(help="Validate the whole lake after ingesting.")] = True,
) -> None:
    """Ingest a dataset's raw files into the Parquet lake (idempotent); quarantine bad rows."""
    from flip_core.data.build import dataset_spec
    from flip_core.lake import (
        IngestError,
        LakeValidationError,
        RejectedRunError,
        ingest_dataset,
        validate_spec_lake,
    )
    from flip_core.spec import SpecError

    cfg = _config(
        config,
        set_ or [],
        **{
            "paths.dataset": dataset,
            "paths.raw_dir": raw_dir,
            "paths.data_root": data_root,
            "ingest.ingest_date": ingest_date,
        },
    )
    if cfg.paths.raw_dir is None:
        raise fail("no raw folder: pass --raw-dir DIR (or set paths.raw_dir)", code=2)
    try:
        spec = dataset_spec(cfg)
    except SpecError as exc:
        raise fail(str(exc), code=2, label="spec error") from None
    try:
        result = ingest_dataset(cfg.paths.raw_dir, cfg.paths.data_root, spec, cfg.ingest)
    except RejectedRunError as exc:
        console.print(exc.summary(), markup=False, highlight=False)
        raise fail(str(exc), label="ingest failed") from None
    except IngestError as exc:
        raise fail(str(exc), label="ingest failed") from None
    console.print(result.summary(), markup=False, highlight=False)
    if validate:
        try:
            report = validate_spec_lake(cfg.paths.data_root, spec, cfg.ingest.duckdb)
        except LakeValidationError as exc:
            raise fail(str(exc), label="validation failed") from None
        console.print(f"lake valid: {report.rows}", markup=False, highlight=False)


def download_command(
    dataset: Annotated[str, typer.Argument(help="Dataset to fetch: movielens-1m.")],
    to: Annotated[Path, typer.Option("--to", help="Folder to unpack into.")],
    url: Annotated[
        str | None, typer.Option(help="Mirror URL of the same zip (md5 is still checked).")
    ] = None,
) -> None:
    """Download a public dataset over HTTP(S), verify its md5 and unpack it."""
    from flip_core.lake.download import DATASETS, DownloadError, download_movielens_1m

    if dataset not in DATASETS:
        raise fail(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})", code=2)
    default_url, _ = DATASETS[dataset]
    try:
        result = download_movielens_1m(to, url=url or default_url)
    except DownloadError as exc:
        raise fail(str(exc), label="download failed") from None
    console.print(
        f"downloaded {dataset} (md5 {result.md5}) to {result.folder}: {len(result.files)} files",
        markup=False,
        highlight=False,
    )
