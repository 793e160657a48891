"""The options several `flip` commands share, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Experiment YAML (see configs/).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override one key, e.g. --set training.epochs=2 (repeatable)."
    ),
]
DataRootOpt = Annotated[Path | None, typer.Option(help="Override paths.data_root.")]
DatasetOpt = Annotated[
    Path | None,
    typer.Option(help="Dataset spec YAML (default: paths.dataset, configs/datasets/ml-1m.yaml)."),
]
