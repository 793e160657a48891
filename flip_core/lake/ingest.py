"""Raw MovieLens-style files -> validated, versioned Parquet lake (+ quarantine).

Per source file: numbered lines (`lines.py`) are parsed in SQL (`sql/ingest/parse_*.sql`),
duplicates inside the file are kept once, rows the lake holds already are dropped, pandera checks
the values (`schemas.py`), and the accepted rows are written with DuckDB `COPY` into a staging
folder. Only when every file went through and the bad share is within the limit are the files
renamed into the lake and the manifest rewritten; quarantined rows are kept either way.

Ratings have a fast path for the common case, a clean file: batches of plain `int::int::int::int`
lines are parsed by Arrow's CSV reader (`lines.parse_int_lines`; line numbers are consecutive
there). When every batch parsed that way, no key repeats, none is in the lake and pandera passes
on every row, the rows are written as they are. Anything else (one odd line, one duplicate, one
failing value) sends the file through the exact steps above, which give every row's reason.

Dimension tables (users, movies) keep one row per key, the first version seen: re-sending an
identical row adds nothing; a row whose key the lake holds with other attributes is quarantined
("changed attributes"), so a corrected users.dat needs a deliberate rebuild of the lake rather than
silently changing features of past training runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import operator
import queue
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa

from flip_core.config import DuckDBConfig, IngestConfig
from flip_core.hashing import file_sha256
from flip_core.lake.background import Background
from flip_core.lake.duck import Session, open_session
from flip_core.lake.lines import (
    LineBatch,
    LineStats,
    RawFileError,
    TypedBatch,
    iter_batches,
    iter_line_batches,
    parse_int_lines,
    parse_text_lines,
)
from flip_core.lake.manifest import (
    STAGING_PREFIX,
    LakeManifest,
    SourceEntry,
    lake_dir,
    load_manifest,
    quarantine_dir,
    remove_orphans,
    save_manifest,
    table_files,
)
from flip_core.lake.schemas import TABLES, failure_reasons, ratings_schema
from flip_core.sql import load_sql

ENCODING = "latin-1"
_SHOWN_PROBLEMS = 3
# Tables with a fast parse (all fields integers): Arrow types of their fields, in file order.
_FAST_TYPES: dict[str, dict[str, pa.DataType]] = {
    "ratings": {
        "user_id": pa.int32(),
        "movie_id": pa.int32(),
        "rating": pa.int32(),
        "timestamp": pa.int64(),
    }
}
# Dimension tables with a fast parse (`::`-separated int32 and text fields), in file order.
_FAST_FIELDS: dict[str, dict[str, pa.DataType]] = {
    "users": {
        "user_id": pa.int32(),
        "gender": pa.string(),
        "age": pa.int32(),
        "occupation": pa.int32(),
        "zip": pa.string(),
    },
    "movies": {"movie_id": pa.int32(), "title": pa.string(), "genres": pa.string()},
}


class IngestError(ValueError):
    """The ingest failed; the message says which file and line, and what to do."""


class BadShareError(IngestError):
    """Too many rows were quarantined; nothing was added to the lake (the quarantine is kept)."""

    def __init__(self, message: str, run_id: str, sources: list[SourceReport]) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.sources = sources


@dataclass
class SourceReport:
    """What happened to one raw file."""

    table: str
    path: Path
    sha256: str
    status: str = "ingested"  # ingested | skipped (same content already in the lake)
    lines: int = 0
    kept: int = 0
    quarantined: int = 0
    duplicates: int = 0
    already_in_lake: int = 0
    blank_lines: int = 0
    crlf_lines: int = 0
    truncated: bool = False
    problems: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def rows_seen(self) -> int:
        """Data rows read (blank lines excluded)."""
        return self.kept + self.quarantined + self.duplicates + self.already_in_lake


@dataclass
class IngestResult:
    """The outcome of one ingest run."""

    dataset: str
    lake_dir: Path
    quarantine_dir: Path
    ingest_date: str
    run_id: str
    sources: list[SourceReport]
    table_rows: dict[str, int]
    removed_orphans: list[str] = field(default_factory=list)

    def added(self, table: str) -> int:
        """Rows this run added to `table`."""
        return sum(s.kept for s in self.sources if s.table == table and s.status == "ingested")

    def quarantined(self, table: str | None = None) -> int:
        """Rows this run quarantined (in `table`, or in all tables)."""
        return sum(s.quarantined for s in self.sources if table in (None, s.table))

    @property
    def messages(self) -> list[str]:
        """Every note about the sources, in order."""
        return [m for s in self.sources for m in s.messages]

    def summary(self) -> str:
        """A few lines for people: rows added per table, lake totals, notes."""
        lines = [
            f"lake {self.lake_dir} (ingest_date={self.ingest_date}, run {self.run_id}):",
            *(
                f"  {t}: +{self.added(t):,} rows, {self.quarantined(t):,} quarantined, "
                f"{self.table_rows.get(t, 0):,} in the lake"
                for t in self.table_rows
            ),
            *(f"  note: {m}" for m in self.messages),
        ]
        return "\n".join(lines)


def find_sources(raw_dir: Path) -> list[tuple[str, Path]]:
    """(table, path) of every raw file in `raw_dir`, dimensions first."""
    if not raw_dir.is_dir():
        raise IngestError(f"raw data folder {raw_dir} does not exist")
    found: list[tuple[str, Path]] = []
    for table in ("users", "movies"):
        found += [(table, p) for p in sorted(raw_dir.glob(f"{table}*.dat*")) if _is_raw(p)]
    found += [("ratings", p) for p in sorted(raw_dir.glob("ratings*.dat*")) if _is_raw(p)]
    if not found:
        raise IngestError(
            f"{raw_dir} holds no raw files (users.dat, movies.dat, ratings*.dat[.gz])"
        )
    return found


def _is_raw(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".dat", ".dat.gz"))


def ingest_raw_dir(
    raw_dir: Path,
    data_root: Path,
    config: IngestConfig | None = None,
    ingest_date: str | None = None,
    dataset: str = "ml-1m",
) -> IngestResult:
    """Ingest every raw file of `raw_dir` into `<data_root>/lake/<dataset>`.

    The MovieLens engine with shape-specific fast paths: the ingest benchmark's subject until
    the spec engine (`spec_ingest.ingest_spec_dir`, which the flows use) has them too.

    Files whose content the lake manifest lists already are skipped. Raises `BadShareError` when
    the quarantined share of a table passes `config.max_bad_share`, `IngestError` on unreadable
    input; in both cases the lake is left as it was.
    """
    config = config or IngestConfig()
    date = ingest_date or config.ingest_date or datetime.now(UTC).date().isoformat()
    try:
        datetime.strptime(date, "%Y-%m-%d")
    except ValueError:
        raise IngestError(f"ingest date {date!r} is not a YYYY-MM-DD date") from None
    root = lake_dir(data_root, dataset)
    root.mkdir(parents=True, exist_ok=True)
    with _lake_lock(root):
        manifest = load_manifest(root, dataset)
        removed = remove_orphans(root, manifest)
        run = _Run(root, quarantine_dir(data_root, dataset), date, config, manifest)
        try:
            sources = find_sources(raw_dir)
            run.prefetch(sources)
            for table, path in sources:
                run.ingest_source(table, path)
            run.check_bad_share(raw_dir)
            run.commit()
        finally:
            run.close()
    tables = {t: manifest.rows(t) for t in TABLES}
    return IngestResult(
        dataset=dataset,
        lake_dir=root,
        quarantine_dir=run.quarantine_root,
        ingest_date=date,
        run_id=run.run_id,
        sources=run.reports,
        table_rows=tables,
        removed_orphans=removed,
    )


@contextmanager
def _lake_lock(root: Path) -> Iterator[None]:
    """One ingest at a time per lake."""
    with (root / ".ingest.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestError(f"another ingest is running on {root}") from None
        yield


class _Run:
    """State of one ingest run: staging folder, connection, reports, pending manifest entries."""

    def __init__(
        self,
        root: Path,
        quarantine_root: Path,
        date: str,
        config: IngestConfig,
        manifest: LakeManifest,
    ) -> None:
        self.root = root
        self.quarantine_root = quarantine_root
        self.date = date
        self.config = config
        self.manifest = manifest
        self.run_id = f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        self.staging = root / f"{STAGING_PREFIX}{self.run_id}"
        (self.staging / "tmp").mkdir(parents=True)
        self._session = Background(
            lambda: open_session(config.duckdb, temp_directory=self.staging / "tmp"),
            "ingest-connect",
        )
        self.staged_ids: dict[Path, np.ndarray] = {}  # key ids of staged dimension files
        self.reports: list[SourceReport] = []
        self.entries: list[SourceEntry] = []
        self.staged: dict[str, list[Path]] = {t: [] for t in TABLES}
        self.quarantine_files: list[Path] = []
        self.shas: dict[Path, str] = {}
        self.prefetched: _Prefetch | None = None
        # Clean files still being written, per table: joined before the table's staged files
        # are read, and before commit.
        self.writes: dict[str, list[Background]] = {}

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The run's connection (opened in the background while the first file is read)."""
        session: Session = self._session.result()
        return session.con

    def prefetch(self, sources: list[tuple[str, Path]]) -> None:
        """Start reading and parsing the new fast-path files (ratings) in a background thread.

        They are read while the main thread ingests users and movies; hashing, gzip, and Arrow's
        CSV reader release the GIL. Files the manifest lists (or that repeat an earlier file of
        this run) are left out, as `ingest_source` skips them.
        """
        todo: list[tuple[str, Path]] = []
        for table, path in sources:
            if table not in _FAST_TYPES:
                continue
            sha = self.shas[path] = file_sha256(path)
            if self.manifest.has_source(table, sha) or any(
                t == table and self.shas[p] == sha for t, p in todo
            ):
                continue
            todo.append((table, path))
        if todo:
            self.prefetched = _Prefetch(todo, self._batches)

    def ingest_source(self, table: str, path: Path) -> None:
        sha = self.shas.get(path) or file_sha256(path)
        report = SourceReport(table=table, path=path, sha256=sha)
        self.reports.append(report)
        if self.manifest.has_source(table, sha) or any(
            e.table == table and e.sha256 == sha for e in self.entries
        ):
            report.status = "skipped"
            report.messages.append(
                f"{path.name}: already ingested (same content, sha256 {sha[:12]}), nothing added"
            )
            return
        schema = self._schema(table)  # built before the rows come: the main thread waits anyway
        typed, exact = self._stage(table, path, report)
        if typed and not exact and self._write_clean(table, path, report, typed, schema):
            return
        if not exact:  # the staging table is made when the first exact batch comes
            self.con.execute(load_sql(f"ingest/stage_{table}"))
        self._stage_typed(table, typed)
        self._deduplicate(table)
        self._validate(schema)
        self._collect(path, report)
        self._write(table, path, report)

    def _stage(self, table: str, path: Path, report: SourceReport) -> tuple[list[pa.Table], bool]:
        """Parse `path`: (fast-parsed rows, not staged yet; whether a batch took the exact path).

        The staging table exists (exact batches in it) only when a batch took the exact path.
        """
        stats = LineStats()
        typed: list[pa.Table] = []
        exact = False
        if self.prefetched is not None and self.prefetched.has(table, path):
            batches = self.prefetched.batches(table, path, stats)
        else:
            batches = self._batches(table, path, stats)
        try:
            for batch in batches:
                if isinstance(batch, TypedBatch):
                    typed.append(batch.table)
                    continue
                if not exact:
                    self.con.execute(load_sql(f"ingest/stage_{table}"))
                exact = True
                self.con.register("batch", batch.table)
                self.con.execute(load_sql(f"ingest/parse_{table}"))
                self.con.unregister("batch")
        except RawFileError as exc:
            raise IngestError(f"{exc}; nothing was added to the lake") from None
        record_line_stats(path.name, stats, report)
        return typed, exact

    def _batches(
        self, table: str, path: Path, stats: LineStats
    ) -> Iterator[LineBatch | TypedBatch]:
        chunk, max_line = self.config.chunk_mib << 20, self.config.max_line_bytes
        types, fields = _FAST_TYPES.get(table), _FAST_FIELDS.get(table)
        if types is None and fields is None:
            return iter_line_batches(path, ENCODING, chunk, max_line, stats)

        def fast(data: bytes, first_line: int) -> pa.Table | None:
            if types is not None:
                return parse_int_lines(data, first_line, types, max_line)
            assert fields is not None
            return parse_text_lines(data, first_line, fields, max_line, ENCODING)

        return iter_batches(path, ENCODING, chunk, max_line, stats, fast)

    def _stage_typed(self, table: str, typed: list[pa.Table]) -> None:
        for rows in typed:
            self.con.register("typed", rows)
            self.con.execute(load_sql(f"ingest/stage_typed_{table}"))
            self.con.unregister("typed")

    def _write_clean(
        self,
        table: str,
        path: Path,
        report: SourceReport,
        typed: list[pa.Table],
        schema: pandera.DataFrameSchema,
    ) -> bool:
        """Write fast-parsed rows as they are if all are new, unique and valid; else False."""
        rows = pa.concat_tables(typed)
        target = self.staging / table / self._part()
        # The file is written while the checks run (and while the next file is read, if they
        # pass); it is removed if a check fails.
        writing = Background(lambda: self._copy_clean(table, path, rows, target), "ingest-write")
        try:
            clean = self._all_clean(table, rows, schema)
        except BaseException:
            with contextlib.suppress(Exception):  # the check's error is the one to raise
                writing.result()
            raise
        if not clean:
            writing.result()
            target.unlink(missing_ok=True)
            return False
        self.writes.setdefault(table, []).append(writing)
        report.kept = rows.num_rows
        if table != "ratings":
            self.staged_ids[target] = rows.column(TABLES[table].key[0]).to_numpy()
        self._write(table, path, report, written=target)
        return True

    def _copy_clean(self, table: str, path: Path, rows: pa.Table, target: Path) -> None:
        """COPY clean rows to `target` on a cursor of its own (runs beside the checks)."""
        with self.con.cursor() as cursor:
            cursor.register("clean", rows)
            _copy_rows(cursor, f"write_clean_{table}", table, path, target)

    def _all_clean(self, table: str, rows: pa.Table, schema: pandera.DataFrameSchema) -> bool:
        """No key twice, none in the lake, and pandera accepts every row.

        The key check runs here, not in a thread beside pandera: its numpy calls give up the
        GIL and then wait for pandera's Python to hand it back, so in a thread it took longer
        than pandera itself.
        """
        if _keys_repeat([rows.column(c).to_numpy() for c in TABLES[table].key]) is not False:
            return False
        # One block per column: pandas then views the Arrow buffers (no copy, no fresh pages).
        frame = rows.select(list(TABLES[table].fields)).to_pandas(split_blocks=True)
        if failure_reasons(schema, frame):
            return False
        files = self._visible_files(table)
        if files:
            self.con.register("clean", rows)
            try:
                query = load_sql(f"ingest/clean_in_lake_{table}")
                return bool(self.con.execute(query, {"files": files}).fetchall() == [(0,)])
            finally:
                self.con.unregister("clean")
        return True

    def _deduplicate(self, table: str) -> None:
        self.con.execute(load_sql(f"ingest/dedup_{table}"))
        existing = self._visible_files(table)
        if existing:
            self.con.execute(load_sql(f"ingest/lake_match_{table}"), {"files": existing})

    def _schema(self, table: str) -> pandera.DataFrameSchema:
        """The pandera schema of `table`; for ratings, with the users and movies known so far."""
        if table == "ratings":
            users, movies = self._known_ids("users"), self._known_ids("movies")
            return ratings_schema(users, movies, key_checked=True)
        return TABLES[table].model.to_schema()

    def _validate(self, schema: pandera.DataFrameSchema) -> None:
        frame = self.con.execute(load_sql("ingest/candidates")).df().set_index("line_number")
        if frame.empty:
            return
        reasons = failure_reasons(schema, frame)
        if not reasons:
            return
        rejected = pd.DataFrame(
            {"line_number": np.fromiter(reasons, dtype=np.int64), "reason": list(reasons.values())}
        )
        self.con.register("rejected", rejected)
        self.con.execute(load_sql("ingest/apply_reasons"))
        self.con.unregister("rejected")

    def _finish_writes(self, table: str | None = None) -> None:
        """Wait for the clean files of `table` (or of every table) to be written."""
        for name in [table] if table else list(self.writes):
            pending = self.writes.get(name, [])
            while pending:
                pending.pop(0).result()

    def _visible_files(self, table: str) -> list[str]:
        """The table's lake files plus those staged by this ingest, as paths for DuckDB."""
        self._finish_writes(table)
        return [str(p) for p in table_files(self.root, table) + self.staged[table]]

    def _known_ids(self, table: str) -> np.ndarray:
        """Ids of the table's lake and staged files (staged clean files' ids are kept in memory)."""
        paths = table_files(self.root, table) + self.staged[table]
        known = [self.staged_ids[p] for p in paths if p in self.staged_ids]
        files = [str(p) for p in paths if p not in self.staged_ids]
        if files:
            column = f"{table[:-1]}_id"
            ids = self.con.execute(load_sql(f"ingest/known_{table}"), {"files": files}).df()
            known.append(ids[column].to_numpy())
        return np.concatenate(known) if known else np.empty(0, dtype=np.int32)

    def _collect(self, path: Path, report: SourceReport, unit: str = "line") -> None:
        """Counts of the staged file into its report; messages name rows by `unit`."""
        row = self.con.execute(load_sql("ingest/counts")).fetchone()
        assert row is not None
        report.kept, report.quarantined, report.duplicates, report.already_in_lake = map(int, row)
        name = path.name
        if report.duplicates:
            report.messages.append(
                f"{name}: {report.duplicates} duplicate {unit}(s) inside the file, kept once"
            )
        if report.already_in_lake:
            report.messages.append(
                f"{name}: {report.already_in_lake} row(s) already in the lake, not added again"
            )
        if report.quarantined:
            shown = self.con.execute(
                load_sql("ingest/first_problems"), {"limit": _SHOWN_PROBLEMS}
            ).fetchall()
            report.problems = [f"{name} {unit} {n}: {reason}" for n, reason in shown]
            report.messages.append(
                f"{name}: quarantined {report.quarantined} {unit}(s); first: {report.problems[0]}"
            )

    def _part(self) -> str:
        """Relative path of the next source's Parquet file (per table folder)."""
        return f"ingest_date={self.date}/part-{self.run_id}-{len(self.entries):03d}.parquet"

    def _write(
        self, table: str, path: Path, report: SourceReport, written: Path | None = None
    ) -> None:
        """Write the staged source's kept and quarantined rows; record its manifest entry.

        `written`: the kept rows are in that file already (the clean path wrote them).
        """
        part = self._part()
        files: list[str] = []
        if report.kept:
            target = self.staging / table / part
            if written is None:
                _copy_rows(self.con, f"write_{table}", table, path, target)
            assert written in (None, target)
            self.staged[table].append(target)
            files.append(f"{table}/{part}")
        if report.quarantined:
            target = self.staging / "quarantine" / table / part
            target.parent.mkdir(parents=True, exist_ok=True)
            self.con.execute(
                load_sql(f"ingest/quarantine_{table}"),
                {"path": str(target), "source": path.name},
            )
            self.quarantine_files.append(target)
        self.entries.append(
            SourceEntry(
                table=table,
                path=str(path.resolve()),
                sha256=report.sha256,
                rows=report.kept,
                quarantined=report.quarantined,
                duplicates=report.duplicates,
                already_in_lake=report.already_in_lake,
                ingest_date=self.date,
                run_id=self.run_id,
                files=files,
            )
        )

    def check_bad_share(self, raw_dir: Path) -> None:
        """Raise `BadShareError` (after keeping the quarantine) if a table has too many bad rows."""
        limit = self.config.max_bad_share
        failures: list[str] = []
        for table in self.staged:
            done = [r for r in self.reports if r.table == table and r.status == "ingested"]
            seen = sum(r.rows_seen for r in done)
            bad = sum(r.quarantined for r in done)
            if seen and bad / seen > limit:
                failures.append(
                    f"{table}: {bad:,} of {seen:,} rows quarantined ({bad / seen:.2%}) "
                    f"> limit {limit:.2%}"
                )
        if not failures:
            return
        self._move_quarantine()
        problems = [p for r in self.reports for p in r.problems][:_SHOWN_PROBLEMS]
        raise BadShareError(
            f"ingest of {raw_dir} failed: {'; '.join(failures)}. First problems: "
            f"{' | '.join(problems)}. Quarantine: {self.quarantine_root}. "
            "Nothing was added to the lake.",
            run_id=self.run_id,
            sources=self.reports,
        )

    def commit(self) -> None:
        """Rename staged files into the lake, keep the quarantine, then rewrite the manifest."""
        self._finish_writes()
        for table, paths in self.staged.items():
            for staged in paths:
                final = self.root / table / staged.relative_to(self.staging / table)
                final.parent.mkdir(parents=True, exist_ok=True)
                staged.replace(final)
        self._move_quarantine()
        if self.entries:
            self.manifest.sources.extend(self.entries)
            save_manifest(self.root, self.manifest)

    def _move_quarantine(self) -> None:
        for staged in self.quarantine_files:
            final = self.quarantine_root / staged.relative_to(self.staging / "quarantine")
            final.parent.mkdir(parents=True, exist_ok=True)
            staged.replace(final)
        self.quarantine_files = []

    def close(self) -> None:
        if self.prefetched is not None:
            self.prefetched.close()
        for writes in self.writes.values():
            for writing in writes:
                with contextlib.suppress(Exception):  # the run failed already; files go
                    writing.result()
        with contextlib.suppress(Exception):  # a failed connect was raised already
            self._session.result().close()
        shutil.rmtree(self.staging, ignore_errors=True)


def _copy_rows(
    con: duckdb.DuckDBPyConnection, statement: str, table: str, source: Path, target: Path
) -> None:
    """Run the `COPY ... TO $path` statement `ingest/<statement>` into `target` (ratings rows
    also name their `source` file, cast to the one-value ENUM `source_name` made here)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    params = {"path": str(target)}
    if table == "ratings":
        params["source"] = source.name
        con.execute(load_sql("ingest/source_type"), {"source": source.name})
    con.execute(load_sql(f"ingest/{statement}"), params)


_Batches = Callable[[str, Path, LineStats], Iterator[LineBatch | TypedBatch]]
_DONE = object()


class _Prefetch:
    """Batches of some files, produced in order by one background thread, a few at a time.

    The consumer must ask for the files in the same order (`batches`); the thread's exceptions
    are raised in the consumer; `close` stops the thread (it may be blocked on a full queue).
    """

    def __init__(self, files: list[tuple[str, Path]], batches: _Batches) -> None:
        self.files = list(files)
        self.queue: queue.Queue[tuple[object, object]] = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._produce, args=(batches,), name="ingest-prefetch", daemon=True
        )
        self.thread.start()

    def has(self, table: str, path: Path) -> bool:
        """Whether `path` is the next file of the thread (else read it directly)."""
        return bool(self.files) and self.files[0] == (table, path)

    def batches(self, table: str, path: Path, stats: LineStats) -> Iterator[LineBatch | TypedBatch]:
        """The batches of `path` (the next file in order); `stats` filled in at the end."""
        assert self.files and self.files[0] == (table, path), "files must be read in order"
        self.files.pop(0)
        while True:
            item, extra = self.queue.get()
            if isinstance(item, BaseException):
                raise item
            if item is _DONE:
                assert isinstance(extra, LineStats)
                vars(stats).update(vars(extra))
                return
            assert isinstance(item, LineBatch | TypedBatch)
            yield item

    def _produce(self, batches: _Batches) -> None:
        try:
            for table, path in list(self.files):
                stats = LineStats()
                for batch in batches(table, path, stats):
                    if not self._put(batch, None):
                        return
                if not self._put(_DONE, stats):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc, None)

    def _put(self, item: object, extra: object) -> bool:
        """Queue `item`; False when the consumer closed (then stop producing)."""
        while not self.stop.is_set():
            try:
                self.queue.put((item, extra), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self.queue.get_nowait()  # unblocks a thread waiting on a full queue
            self.thread.join(timeout=0.01)


def record_line_stats(name: str, stats: LineStats, report: SourceReport) -> None:
    """Copy a file's line counts into its report, with a message for each oddity."""
    report.lines = stats.lines
    report.blank_lines = stats.blank_count
    report.crlf_lines = stats.crlf_lines
    report.truncated = stats.truncated
    if stats.empty:
        report.messages.append(f"{name}: empty file, nothing to ingest")
    if stats.blank_count:
        where = ", ".join(str(n) for n in stats.blank_lines)
        more = ", ..." if stats.blank_count > len(stats.blank_lines) else ""
        report.messages.append(
            f"{name}: skipped {stats.blank_count} blank line(s) (line {where}{more})"
        )
    if stats.crlf_lines:
        report.messages.append(
            f"{name}: {stats.crlf_lines} line(s) end in CRLF; read as plain line ends"
        )
    if stats.truncated:
        report.messages.append(
            f"{name}: gzip stream is truncated after line {stats.lines}; the complete lines "
            "were ingested, fetch the file again for the rest"
        )


def read_quarantine(
    data_root: Path, dataset: str, duckdb_config: DuckDBConfig | None = None
) -> pd.DataFrame:
    """Every quarantined row of a dataset (source file, line number, reason, raw line)."""
    files = sorted(quarantine_dir(data_root, dataset).glob("*/ingest_date=*/*.parquet"))
    if not files:
        return pd.DataFrame(
            columns=["table_name", "source_file", "line_number", "reason", "raw_line"]
        )
    with open_session(duckdb_config or DuckDBConfig()) as con:
        query = load_sql("ingest/read_quarantine")
        return con.execute(query, {"files": [str(f) for f in files]}).df()


def table_counts(sources: list[SourceReport]) -> dict[str, dict[str, int]]:
    """Per table: rows read, added, quarantined, duplicates, already in the lake."""
    counts: dict[str, dict[str, int]] = {}
    for report in sources:
        row = counts.setdefault(
            report.table,
            {"read": 0, "added": 0, "quarantined": 0, "duplicates": 0, "already_in_lake": 0},
        )
        row["read"] += report.rows_seen
        row["added"] += report.kept
        row["quarantined"] += report.quarantined
        row["duplicates"] += report.duplicates
        row["already_in_lake"] += report.already_in_lake
    return counts


def quarantine_reasons(
    data_root: Path, dataset: str, run_id: str, duckdb_config: DuckDBConfig | None = None
) -> dict[str, int]:
    """Quarantined rows of one run per reason (offending values stripped), most frequent first."""
    root = quarantine_dir(data_root, dataset)
    files = sorted(root.glob(f"*/ingest_date=*/part-{run_id}-*.parquet"))
    if not files:
        return {}
    with open_session(duckdb_config or DuckDBConfig()) as con:
        rows = con.execute(
            load_sql("ingest/quarantine_reasons"), {"files": [str(f) for f in files]}
        ).fetchall()
    return {str(reason): int(n) for reason, n in rows}


def _keys_repeat(columns: list[np.ndarray]) -> bool | None:
    """Whether some row repeats the key made of `columns` (integers); None if it cannot tell.

    The key is packed exactly into one integer (offsets by each column's minimum), then sorted;
    None when the value ranges are too wide to pack. A shorter key prefix is tried first when it
    can hold as many values as there are rows (one with fewer must repeat): if its rows are all
    distinct, so are the whole keys (ratings: (user, movie) packs into int32 and sorts twice as
    fast as the int64 (user, movie, timestamp)).
    """
    ranges = [(int(column.min()), int(column.max())) for column in columns]
    spans = list(itertools.accumulate((high - low + 1 for low, high in ranges), operator.mul))
    if spans[-1] >= 1 << 63:
        return None
    rows = len(columns[0])
    prefix = next(n for n, span in enumerate(spans, 1) if span >= rows or n == len(columns))
    head, head_ranges = columns[:prefix], ranges[:prefix]
    if prefix < len(columns) and not _packed_repeat(head, head_ranges, spans[prefix - 1]):
        return False
    return _packed_repeat(columns, ranges, spans[-1])


def _packed_repeat(columns: list[np.ndarray], ranges: list[tuple[int, int]], span: int) -> bool:
    """Whether two rows of `columns` are equal, packed into one int32 (`span` < 2**31) or int64."""
    narrow = span < 1 << 31
    dtype = np.int32 if narrow else np.int64
    packed: npt.NDArray[np.signedinteger[Any]] = np.zeros(len(columns[0]), dtype=dtype)
    for column, (low, high) in zip(columns, ranges, strict=True):
        packed *= high - low + 1
        # narrow: each column's width is < 2**31, so `column - low` fits int32 (exactly, even
        # when computed in int32 with wrap-around); else it is taken in int64
        packed += column - low if narrow else column.astype(np.int64) - low
    packed.sort()
    return bool((packed[1:] == packed[:-1]).any())
