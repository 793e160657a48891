"""`flip data replay`: cut a dataset's events into daily inbox files (flip_core.data.replay)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from flip_core.data.build import dataset_spec
from flip_core.data.replay import ReplayError, replay
from flip_core.spec import DatasetSpec, SpecError
from flows.cli.console import fail, resolve_config
from flows.cli.options import DatasetOpt


def _parse_day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise fail(f"--until {text!r} is not a date (YYYY-MM-DD)", code=2) from None


def _spec(dataset: Path | None) -> DatasetSpec:
    config = resolve_config(None, None, **{"paths.dataset": dataset})
    try:
        return dataset_spec(config)
    except SpecError as exc:
        raise fail(str(exc), code=2, label="spec error") from None


def replay_command(
    raw_dir: Annotated[Path, typer.Option(help="Raw folder of the dataset.")],
    inbox: Annotated[Path, typer.Option(help="Inbox folder the nightly flow ingests from.")],
    until: Annotated[
        str | None, typer.Option(help="Replay every day up to this one (YYYY-MM-DD).")
    ] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Replay the first N days.")] = None,
    next_: Annotated[
        int | None,
        typer.Option("--next", min=1, help="Add the next N days after the inbox's last one."),
    ] = None,
    dataset: DatasetOpt = None,
) -> None:
    """Cut the events into daily inbox files by event time (other tables copied alongside).

    Without --until/--days/--next every day is written. Rerunning is safe: days already in the
    inbox are left alone.
    """
    try:
        result = replay(_spec(dataset), raw_dir, inbox, _parse_day(until), days, next_)
    except ReplayError as exc:
        raise fail(str(exc), code=2) from None
    span = f" ({result.written[0]} .. {result.written[-1]})" if result.written else ""
    typer.echo(
        f"wrote {len(result.written)} new day file(s){span}, {result.rows_written} events, "
        f"to {inbox}; {len(result.unchanged)} already there; "
        f"{len(result.remaining)} of {result.total_days} day(s) left"
        + (f" (next: {result.remaining[0]})" if result.remaining else "")
    )
    if result.undated_lines:
        typer.echo(f"skipped {result.undated_lines} line(s) without a readable timestamp")
