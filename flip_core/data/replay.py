"""Replay a raw dataset as daily inbox files, so nights can be replayed.

The dataset spec says which table holds the events, where its event time is and how its files
are read. Each events row goes, by the UTC day of its event time, to a day file named after the
events table's first file pattern with its `*` replaced by `-YYYY-MM-DD` (ml-1m `ratings*.dat`:
`<inbox>/ratings-2000-04-25.dat`; a `-` is put between a name and the date), so the ingest picks each new day up as a new source of the same
table. Delimited lines are copied byte for byte (latin-1 stays latin-1; a header line heads every
day file; a gzip source gives plain day files); Parquet events give one Parquet file per day. The
files of every other table are copied alongside. Writing is idempotent: a day already in the
inbox with the same bytes is left alone; one with different bytes is an error (the inbox belongs
to another source).
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flip_core.hashing import file_sha256
from flip_core.lake.ingest import find_sources
from flip_core.lake.reports import IngestError
from flip_core.spec import DatasetSpec, TableSpec

DAY_PATTERN = "????-??-??"


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


@dataclass(frozen=True)
class DayFiles:
    """Where an events table's day files live: `<inbox>/<prefix>YYYY-MM-DD<suffix>`."""

    prefix: str
    suffix: str

    @classmethod
    def of(cls, table: TableSpec) -> DayFiles:
        """The day-file name of `table`, from its first pattern that is not a gzip one."""
        patterns = [p for p in table.files if not p.endswith(".gz")] or table.files
        pattern = Path(patterns[0]).name
        if pattern.count("*") != 1 or any(ch in pattern for ch in "?["):
            raise ReplayError(
                f"table {table.name}: files pattern {patterns[0]!r} needs exactly one '*' "
                "(and no '?' or '[') to name day files the ingest reads as the same table"
            )
        prefix, suffix = pattern.split("*")
        if prefix and prefix[-1] not in "-_.":
            prefix += "-"
        return cls(prefix, suffix.removesuffix(".gz"))

    def path(self, inbox: Path, day: date) -> Path:
        """The file of `day`."""
        return inbox / f"{self.prefix}{day.isoformat()}{self.suffix}"

    def days(self, inbox: Path) -> list[date]:
        """The days already in `inbox`, sorted."""
        found = []
        for path in inbox.glob(f"{self.prefix}{DAY_PATTERN}{self.suffix}"):
            stamp = path.name.removeprefix(self.prefix).removesuffix(self.suffix)
            try:
                found.append(date.fromisoformat(stamp))
            except ValueError:
                continue
        return sorted(found)


def _source_files(spec: DatasetSpec, raw_dir: Path) -> dict[str, list[Path]]:
    """The files of every table, found as the ingest finds them (`find_sources`); a table
    without any is an error."""
    try:
        found = find_sources(raw_dir, spec)
    except IngestError as exc:
        raise ReplayError(str(exc)) from None
    files: dict[str, list[Path]] = {t.name: [] for t in spec.tables}
    for table, path in found:
        files[table.name].append(path)
    for table in spec.tables:
        if not files[table.name]:
            raise ReplayError(f"{raw_dir}: no file of table {table.name} ({table.files})")
    return files


def _lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        yield from handle


def _day(value: str, numeric: bool) -> date | None:
    try:
        if numeric:
            return datetime.fromtimestamp(int(value), tz=UTC).date()
        moment = datetime.fromisoformat(value.strip())
    except (ValueError, OverflowError, OSError):
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


class _TimeColumn:
    """Finds the event time in one delimited line of an events table."""

    def __init__(self, spec: DatasetSpec, table: TableSpec) -> None:
        self.table = table
        self.column = next(c for c in table.columns if c.name == spec.timestamp)
        self.numeric = self.column.type != "timestamp"
        self.delimiter = table.delimiter.encode(table.encoding)
        self.index = table.columns.index(self.column)

    def use_header(self, line: bytes, path: Path) -> None:
        """Locate the column by its header name (`source`, else `name`)."""
        names = self._fields(line)
        wanted = self.column.source or self.column.name
        if wanted not in names:
            raise ReplayError(f"{path.name}: the header has no column {wanted!r} ({names})")
        self.index = names.index(wanted)

    def day(self, line: bytes) -> date | None:
        fields = self._fields(line)
        return _day(fields[self.index], self.numeric) if self.index < len(fields) else None

    def _fields(self, line: bytes) -> list[str]:
        text = line.rstrip(b"\r\n")
        if self.table.quote is None or len(self.delimiter) > 1:
            return [f.decode(self.table.encoding, "replace") for f in text.split(self.delimiter)]
        decoded = text.decode(self.table.encoding, "replace")
        reader = csv.reader(
            io.StringIO(decoded), delimiter=self.table.delimiter, quotechar=self.table.quote
        )
        return next(reader, [])


def _split_by_day(
    spec: DatasetSpec, files: list[Path]
) -> tuple[dict[date, list[bytes]], bytes, int]:
    """Delimited events lines grouped by UTC day (file order kept), the header line (b"" when
    the table has none) and the count of lines without a readable event time."""
    table = spec.table(spec.events)
    time = _TimeColumn(spec, table)
    days: dict[date, list[bytes]] = defaultdict(list)
    header, undated = b"", 0
    for path in files:
        lines = _lines(path)
        if table.header:
            first = next(lines, b"")
            time.use_header(first, path)
            header = header or _terminated(first)
        for line in lines:
            if not line.strip():
                continue
            day = time.day(line)
            if day is None:
                undated += 1
                continue
            days[day].append(_terminated(line))
    return dict(days), header, undated


def _terminated(line: bytes) -> bytes:
    return line if line.endswith(b"\n") else line + b"\n"


def _parquet_days(spec: DatasetSpec, files: list[Path]) -> tuple[dict[date, pa.Table], int]:
    table = spec.table(spec.events)
    column = next(c for c in table.columns if c.name == spec.timestamp)
    rows = pa.concat_tables(
        [pq.read_table(p) for p in files], promote_options="default"
    )
    values = rows.column(column.source or column.name)
    if column.type == "timestamp":
        moments = pc.cast(values, pa.timestamp("s", tz="UTC"))
    else:
        moments = pc.cast(pc.cast(values, pa.int64()), pa.timestamp("s", tz="UTC"))
    days = pc.cast(moments, pa.date32())
    dated = pc.is_valid(days)
    rows, days = rows.filter(dated), days.filter(dated)
    grouped = {
        day: rows.filter(pc.equal(days, pa.scalar(day, pa.date32())))
        for day in sorted(set(days.to_pylist()))
    }
    return grouped, len(dated) - len(rows)


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


def _parquet_bytes(rows: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(rows, sink)
    return sink.getvalue()


def _copy_side_files(files: dict[str, list[Path]], events: str, inbox: Path) -> None:
    for table, sources in files.items():
        if table == events:
            continue
        for source in sources:
            target = inbox / source.name
            if target.exists():
                if file_sha256(target) != file_sha256(source):
                    raise ReplayError(f"{target} differs from {source}: use a fresh inbox")
                continue
            tmp = target.with_name(f".{source.name}.tmp")
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
    spec: DatasetSpec,
    raw_dir: Path,
    inbox: Path,
    until: date | None = None,
    days: int | None = None,
    next_days: int | None = None,
) -> ReplayResult:
    """Write the selected days of `raw_dir` into `inbox` (see module doc); returns what it did."""
    files = _source_files(spec, raw_dir)
    table = spec.table(spec.events)
    names = DayFiles.of(table)
    payloads: dict[date, tuple[bytes, int]]
    if table.format == "parquet":
        grouped, undated = _parquet_days(spec, files[table.name])
        payloads = {d: (_parquet_bytes(rows), rows.num_rows) for d, rows in grouped.items()}
    else:
        by_day, header, undated = _split_by_day(spec, files[table.name])
        payloads = {d: (header + b"".join(lines), len(lines)) for d, lines in by_day.items()}
    all_days = sorted(payloads)
    inbox.mkdir(parents=True, exist_ok=True)
    chosen = select_days(all_days, names.days(inbox), until, days, next_days)
    _copy_side_files(files, table.name, inbox)
    result = ReplayResult(undated_lines=undated, total_days=len(all_days))
    for day in chosen:
        payload, rows = payloads[day]
        if _write_if_new(names.path(inbox, day), payload):
            result.written.append(day)
            result.rows_written += rows
        else:
            result.unchanged.append(day)
    last = chosen[-1] if chosen else None
    result.remaining = [d for d in all_days if last is None or d > last]
    return result
