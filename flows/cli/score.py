"""`flip score`: stream raw rows through a registered model into a Parquet file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flip_core.scoring import ScoringError
from flows.cli.console import fail, resolve_config
from flows.cli.options import ConfigOpt, SetOpt

console = Console()


def score_command(
    input_path: Annotated[
        Path, typer.Option("--input", "-i", help="Raw rows: .parquet or .csv file.")
    ],
    output_path: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model URI, e.g. models:/flip-ctr@champion (default: the configured "
            "registered model's champion).",
        ),
    ] = None,
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Rows read and scored at a time.")
    ] = 100_000,
    keep: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated input columns copied to the output (default: the model's "
            "user and item columns)."
        ),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Score raw rows (the raw columns of the model's dataset spec) in chunks; writes the kept
    columns plus `probability`."""
    from tasks.score import score

    cfg = resolve_config(config, set_)
    try:
        uri = model or f"models:/{cfg.mlflow.registered_model}@champion"
        keep_cols = None if keep is None else tuple(c.strip() for c in keep.split(",") if c.strip())
        summary = score(
            uri, input_path, output_path, chunk_rows, cfg.mlflow.tracking_uri, keep_cols
        )
    except ScoringError as exc:
        raise fail(str(exc), code=2) from None
    rate = summary.rows / max(summary.seconds, 1e-9)
    console.print(
        f"scored {summary.rows} rows in {summary.chunks} chunks with {uri} -> {output_path} "
        f"({summary.seconds:.1f} s, {rate:,.0f} rows/s)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
