"""`flip data replay`: cut a raw dataset into daily inbox files (see flip_core.data.replay)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from flip_core.data.replay import ReplayError, replay
from flows.console import fail


def _parse_day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise fail(f"--until {text!r} is not a date (YYYY-MM-DD)", code=2) from None


def replay_command(
    raw_dir: Annotated[Path, typer.Option(help="Raw folder: users.dat, movies.dat, ratings.")],
    inbox: Annotated[Path, typer.Option(help="Inbox folder the nightly flow ingests from.")],
    until: Annotated[
        str | None, typer.Option(help="Replay every day up to this one (YYYY-MM-DD).")
    ] = None,
    days: Annotated[int | None, typer.Option(min=1, help="Replay the first N days.")] = None,
    next_: Annotated[
        int | None,
        typer.Option("--next", min=1, help="Add the next N days after the inbox's last one."),
    ] = None,
) -> None:
    """Cut ratings into daily inbox files by timestamp (users/movies copied alongside).

    Without --until/--days/--next every day is written. Rerunning is safe: days already in the
    inbox are left alone.
    """
    try:
        result = replay(raw_dir, inbox, _parse_day(until), days, next_)
    except ReplayError as exc:
        raise fail(str(exc), code=2) from None
    span = f" ({result.written[0]} .. {result.written[-1]})" if result.written else ""
    typer.echo(
        f"wrote {len(result.written)} new day file(s){span}, {result.rows_written} ratings, "
        f"to {inbox}; {len(result.unchanged)} already there; "
        f"{len(result.remaining)} of {result.total_days} day(s) left"
        + (f" (next: {result.remaining[0]})" if result.remaining else "")
    )
    if result.undated_lines:
        typer.echo(f"skipped {result.undated_lines} line(s) without a readable timestamp")
