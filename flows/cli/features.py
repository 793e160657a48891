"""`flip features`: protocol splits, vocabularies and prompt features; prints the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flows.cli.console import fail, resolve_config
from flows.cli.options import ConfigOpt, DataRootOpt, DatasetOpt, SetOpt

console = Console(soft_wrap=True)


def features_command(
    dataset: DatasetOpt = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data_root: DataRootOpt = None,
    protocol: Annotated[
        str | None,
        typer.Option(help="A protocol of the dataset spec (default: its first)."),
    ] = None,
    lake: Annotated[
        Path | None, typer.Option(help="Lake folder; default <data_root>/lake/<dataset>.")
    ] = None,
    plm: Annotated[
        str | None, typer.Option(help="Tokenizer: PLM alias, folder or hub name.")
    ] = None,
) -> None:
    """Build splits + vocabularies from the lake, render + tokenize prompts; print the manifest."""
    from flip_core.data.build import (
        build_splits_from_config,
        default_lake_dir,
        manifest_lines,
        render_from_config,
    )
    from flip_core.data.render import read_manifest

    cfg = resolve_config(
        config,
        set_,
        **{
            "paths.dataset": dataset,
            "paths.data_root": data_root,
            "features.protocol": protocol,
            "plm.name": plm,
        },
    )
    try:
        lake_dir = lake or default_lake_dir(cfg)
        splits = build_splits_from_config(cfg, lake_dir)
        built = render_from_config(cfg, splits.splits_dir)
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise fail(str(exc).splitlines()[0], code=2) from None
    for line in manifest_lines(read_manifest(built.features_dir)):
        console.print(line, markup=False, highlight=False)
    state = "cached" if built.cached else "built"
    console.print(f"features ({state}): {built.features_dir}", markup=False, highlight=False)
