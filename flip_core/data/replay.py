"""Replay a raw MovieLens-style dataset as daily inbox files, so nights can be replayed.

`ratings.dat` (or `ratings*.dat.gz`) is cut by the UTC day of each rating's timestamp into
`<inbox>/ratings-YYYY-MM-DD.dat`; `users.dat` and `movies.dat` are copied alongside. Lines are
copied byte for byte (latin-1 stays latin-1). Writing is idempotent: a day already in the inbox
with the same bytes is left alone; one with different bytes is an error (the inbox belongs to
another source). The ingest stage picks up each new day's file as a new source.
"""

from __future__ import annotations

import gzip
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from flip_core.hashing import file_sha256

DAY_PREFIX = "ratings-"
SIDE_FILES = ("users.dat", "movies.dat")


class ReplayError(ValueError):
    """The source or the inbox cannot be replayed as asked; the message says why."""


@dataclass
class ReplayResult:
    """What a replay call did."""

    written: list[date] = field(default_factory=list)
    unchanged: list[date] = field(default_factory=list)
    rows_written: int = 0
    remaining: list[date] = field(default_factory=list)
    undated_lines: int = 0
    total_days: int = 0


def _ratings_files(raw_dir: Path) -> list[Path]:
    plain = raw_dir / "ratings.dat"
    if plain.is_file():
        return [plain]
    files = sorted(raw_dir.glob("ratings*.dat.gz"))
    if not files:
        raise ReplayError(f"{raw_dir}: no ratings.dat or ratings*.dat.gz to replay")
    return files


def _lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        yield from handle


def _day_of(line: bytes) -> date | None:
    parts = line.rstrip(b"\r\n").split(b"::")
    if len(parts) != 4:
        return None
    try:
        return datetime.fromtimestamp(int(parts[3]), tz=UTC).date()
    except (ValueError, OverflowError, OSError):
        return None


def split_by_day(raw_dir: Path) -> tuple[dict[date, list[bytes]], int]:
    """Rating lines grouped by UTC day (file order kept), and the count of undated lines."""
    days: dict[date, list[bytes]] = defaultdict(list)
    undated = 0
    for path in _ratings_files(raw_dir):
        for line in _lines(path):
            if not line.strip():
                continue
            day = _day_of(line)
            if day is None:
                undated += 1
                continue
            days[day].append(line if line.endswith(b"\n") else line + b"\n")
    return dict(days), undated


def day_file(inbox: Path, day: date) -> Path:
    """`<inbox>/ratings-YYYY-MM-DD.dat`."""
    return inbox / f"{DAY_PREFIX}{day.isoformat()}.dat"


def days_in_inbox(inbox: Path) -> list[date]:
    """The days already replayed into `inbox`, sorted."""
    found = []
    for path in inbox.glob(f"{DAY_PREFIX}*.dat"):
        try:
            found.append(date.fromisoformat(path.stem.removeprefix(DAY_PREFIX)))
        except ValueError:
            continue
    return sorted(found)


def _write_if_new(target: Path, payload: bytes) -> bool:
    """Write atomically; False when identical bytes are there; error when different ones are."""
    if target.exists():
        if target.read_bytes() == payload:
            return False
        raise ReplayError(f"{target} exists with different content: use a fresh inbox")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(payload)
    tmp.replace(target)
    return True


def _copy_side_files(raw_dir: Path, inbox: Path) -> None:
    for name in SIDE_FILES:
        source = raw_dir / name
        if not source.is_file():
            raise ReplayError(f"{raw_dir}: missing {name}")
        target = inbox / name
        if target.exists():
            if file_sha256(target) != file_sha256(source):
                raise ReplayError(f"{target} differs from {source}: use a fresh inbox")
            continue
        tmp = target.with_name(f".{name}.tmp")
        shutil.copyfile(source, tmp)
        tmp.replace(target)


def select_days(
    all_days: list[date],
    present: list[date],
    until: date | None = None,
    days: int | None = None,
    next_days: int | None = None,
) -> list[date]:
    """Days to have in the inbox: through `until`, the first `days`, or `next_days` more."""
    if sum(x is not None for x in (until, days, next_days)) > 1:
        raise ReplayError("give at most one of until, days, next")
    if until is not None:
        return [d for d in all_days if d <= until]
    if days is not None:
        return all_days[:days]
    if next_days is not None:
        last = present[-1] if present else None
        later = [d for d in all_days if last is None or d > last]
        return [d for d in all_days if last is not None and d <= last] + later[:next_days]
    return all_days


def replay(
    raw_dir: Path,
    inbox: Path,
    until: date | None = None,
    days: int | None = None,
    next_days: int | None = None,
) -> ReplayResult:
    """Write the selected days of `raw_dir` into `inbox` (see module doc); returns what it did."""
    if not raw_dir.is_dir():
        raise ReplayError(f"raw data folder {raw_dir} does not exist")
    by_day, undated = split_by_day(raw_dir)
    all_days = sorted(by_day)
    inbox.mkdir(parents=True, exist_ok=True)
    chosen = select_days(all_days, days_in_inbox(inbox), until, days, next_days)
    _copy_side_files(raw_dir, inbox)
    result = ReplayResult(undated_lines=undated, total_days=len(all_days))
    for day in chosen:
        lines = by_day[day]
        if _write_if_new(day_file(inbox, day), b"".join(lines)):
            result.written.append(day)
            result.rows_written += len(lines)
        else:
            result.unchanged.append(day)
    last = chosen[-1] if chosen else None
    result.remaining = [d for d in all_days if last is None or d > last]
    return result
