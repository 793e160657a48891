"""`flip benchmark`: run the benchmark flow locally and rewrite the results table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.console import fail, resolve_config
from flows.cli.options import ConfigOpt, DataRootOpt, DatasetOpt, SetOpt


def _split(text: str, what: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        typer.echo(f"error: --{what} is empty", err=True)
        raise typer.Exit(code=2)
    return items


def benchmark_command(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    raw_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder of raw files the dataset spec reads; required unless --set "
            "synth.enabled=true (with a synth-* --dataset)."
        ),
    ] = None,
    data_root: DataRootOpt = None,
    protocol: Annotated[str | None, typer.Option(help="Split protocol.")] = None,
    dataset: DatasetOpt = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated ID backbones ('' for none).")
    ] = "dcnv2",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0,1,2",
    variants: Annotated[
        str,
        typer.Option(
            help="Comma-separated FLIP arms (flip_id, control, scratch, flip, flip_plm, "
            "plm_only, id_only); writes evidence.json and its tables."
        ),
    ] = "",
    results: Annotated[Path, typer.Option(help="Markdown file to rewrite.")] = Path(
        "docs/results.md"
    ),
) -> None:
    """Train models x seeds on one protocol and rewrite the table in docs/results.md."""
    try:
        seed_list = [int(s) for s in _split(seeds, "seeds")]
    except ValueError:
        typer.echo(f"error: --seeds must be comma-separated integers, got {seeds!r}", err=True)
        raise typer.Exit(code=2) from None
    model_list = _split(models, "models") if models.strip() else []
    variant_list = [v.strip() for v in variants.split(",") if v.strip()]
    known = ("flip_id", "control", "scratch", "flip", "flip_plm", "plm_only", "id_only")  # ARMS
    unknown = sorted(set(variant_list) - set(known))
    if unknown:
        raise fail(f"unknown variant(s) {', '.join(unknown)}; use {', '.join(known)}", code=2)
    resolve_config(config, set_)  # fail fast, before Prefect starts
    from flows.benchmark import benchmark

    chosen = variant_list or None

    rows = benchmark(
        config_file=config,
        data_root=data_root,
        raw_dir=raw_dir,
        protocol=protocol,
        dataset=dataset,
        models=model_list,
        seeds=seed_list,
        results_path=results,
        overrides=set_,
        variants=chosen,
    )
    for row in rows:
        typer.echo(f"{row['model']}: test AUC {row['test_auc'][0]:.4f} ± {row['test_auc'][1]:.4f}")
    typer.echo(f"table written to {results}")
