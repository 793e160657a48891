"""`flip data ingest` and `flip data download`: raw files -> validated lake; public zips."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flows.cli.console import fail, resolve_config
from flows.cli.options import ConfigOpt, DataRootOpt, DatasetOpt, SetOpt

console = Console(width=200)


def ingest_command(
    dataset: DatasetOpt = None,
    raw_dir: Annotated[
        Path | None, typer.Option(help="Folder of raw files the dataset spec reads.")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data_root: DataRootOpt = None,
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

    cfg = resolve_config(
        config,
        set_,
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
    to: Annotated[Path, typer.Option("--to", help="Folder to unpack into.")],
    dataset: Annotated[
        Path | None,
        typer.Option(
            help="Dataset spec YAML with a `download:` entry (default: paths.dataset, "
            "configs/datasets/ml-1m.yaml)."
        ),
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="Mirror URL of the same zip (md5 is still checked).")
    ] = None,
) -> None:
    """Download a dataset's public zip over HTTP(S), verify its md5 and unpack it."""
    from flip_core.data.build import dataset_spec
    from flip_core.lake.download import DownloadError, download_archive
    from flip_core.spec import SpecError

    cfg = resolve_config(None, None, **{"paths.dataset": dataset})
    try:
        spec = dataset_spec(cfg)
    except SpecError as exc:
        raise fail(str(exc), code=2, label="spec error") from None
    if spec.download is None:
        raise fail(
            f"{cfg.paths.dataset}: dataset {spec.name!r} has no `download:` entry (url, md5); "
            "its raw files come from you",
            code=2,
        )
    try:
        result = download_archive(to, url or spec.download.url, spec.download.md5)
    except DownloadError as exc:
        raise fail(str(exc), label="download failed") from None
    console.print(
        f"downloaded {spec.name} (md5 {result.md5}) to {result.folder}: {len(result.files)} files",
        markup=False,
        highlight=False,
    )
