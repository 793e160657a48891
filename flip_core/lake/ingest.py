"""Raw files described by a dataset spec -> validated, versioned Parquet lake (+ quarantine).

One engine for every spec: `ingest_dataset`. One lake table per spec table,
`<data_root>/lake/<spec.name>/<table>/ingest_date=.../*.parquet`, with the table's columns,
`source_file` and `line_number`. One run ingests every table (the joined dimension tables first,
the events last) and commits all of them or nothing: files are written into a staging folder and
renamed into the lake, and the manifest of content hashes rewritten, only when every file went
through, the bad share is within the limit and no table would be left with no row (a file
ingested before adds nothing). Quarantined rows (source file and sha256, line number, reason)
are kept either way, one per (sha256, line): a rerun records nothing twice, and a committed run
removes the rows of its sources that an earlier failed run refused and that went in this time.
The events' time column is bounded (`bounds.py`); a truncated gzip's entry is tagged partial
in the manifest and the next file of its name completes it.

Each file takes one of two paths, with the same rows, line numbers and messages:
- fast, for a CSV table of simple shape (no header, no quoting, columns of type int32, int64 or
  string): batches of plain lines are typed in one go (`lines.parse_int_lines` when every column
  is an integer and the delimiter is one repeated character, else `lines.parse_text_lines`).
  When every batch parsed so, no key repeats in the file, none is in the lake, every foreign key
  is known and pandera passes on every row, the rows are written as they are (in the
  background, while the next file is read).
- exact (`exact.ExactReader`), for anything else (one odd line, one duplicate, one failing
  value, a header, quoting, Parquet): the file is read (again) line by line and every row gets
  its reason. Duplicates inside a file are kept once; rows the lake holds already are dropped;
  a key the lake holds with other values is quarantined, as are rows failing the spec's rules.

Foreign keys come from the spec's joins (`foreign.py`): a row whose join key is no row of the
joined table (its lake plus the rows this run stages) is quarantined, naming the key and table;
when the key's own row was quarantined in this run, the reason names that row and its reason;
when the joined table has no row at all, it says the table is empty. So the dependants of a
quarantined row follow it into the quarantine, each pointing at the root cause.

Dimension tables keep one row per key, the first version seen: re-sending an identical row adds
nothing, while a changed row is quarantined, so correcting a dimension file needs a deliberate
rebuild of the lake rather than silently changing features of past training runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.parquet as pq

from flip_core.config import IngestConfig
from flip_core.hashing import file_sha256
from flip_core.lake import foreign
from flip_core.lake.background import Background
from flip_core.lake.bounds import TimeBounds
from flip_core.lake.duck import Session, open_session
from flip_core.lake.exact import ExactReader
from flip_core.lake.keys import keys_repeat
from flip_core.lake.lines import (
    FastParser,
    LineBatch,
    LineStats,
    RawFileError,
    TypedBatch,
    int_delimiter,
    iter_batches,
    parse_int_lines,
    parse_text_lines,
)
from flip_core.lake.manifest import (
    STAGING_PREFIX,
    LakeManifest,
    SourceEntry,
    load_manifest,
    remove_orphans,
    save_manifest,
    table_files,
)
from flip_core.lake.prefetch import Prefetch
from flip_core.lake.reports import (
    BadShareError,
    EmptyTableError,
    IngestError,
    IngestResult,
    SourceReport,
    prune_quarantine,
    record_line_stats,
    recorded_lines,
)
from flip_core.lake.spec_schema import failure_reasons, spec_schema
from flip_core.layout import DataLayout
from flip_core.spec import WHITESPACE, DatasetSpec, JoinSpec, TableSpec
from flip_core.sql import load_sql

_SHOWN_PROBLEMS = 3
_ARROW_TYPES = {"int32": pa.int32(), "int64": pa.int64(), "string": pa.string()}


def ingest_dataset(
    raw_dir: Path,
    data_root: Path,
    spec: DatasetSpec,
    config: IngestConfig | None = None,
    ingest_date: str | None = None,
) -> IngestResult:
    """Ingest the files of `raw_dir` that `spec` matches into `<data_root>/lake/<spec.name>`.

    Raises `BadShareError` when the quarantined share of a table passes
    `config.max_bad_share`, `EmptyTableError` when a table would have no row after the run (an
    empty or missing file, every row quarantined), `IngestError` on unreadable input; in every
    case the lake is left as it was (the quarantine is kept): a run commits all or nothing.
    """
    config = config or IngestConfig()
    date = ingest_date or config.ingest_date or datetime.now(UTC).date().isoformat()
    try:
        datetime.strptime(date, "%Y-%m-%d")
    except ValueError:
        raise IngestError(f"ingest date {date!r} is not a YYYY-MM-DD date") from None
    root = DataLayout(data_root).lake(spec.name)
    root.mkdir(parents=True, exist_ok=True)
    with _lake_lock(root):
        manifest = load_manifest(root, spec.name)
        removed = remove_orphans(root, manifest)
        for table in spec.tables:
            check_lake_columns(root, table)
        run = _Run(root, DataLayout(data_root).quarantine(spec.name), date, config, manifest, spec)
        try:
            sources = find_sources(raw_dir, spec)
            run.prefetch(sources)
            for table, path in sources:
                run.ingest_source(table, path)
            run.check_outcome(raw_dir)
            run.commit()
        finally:
            run.close()
    return IngestResult(
        dataset=spec.name,
        lake_dir=root,
        quarantine_dir=run.quarantine_root,
        ingest_date=date,
        run_id=run.run_id,
        sources=run.reports,
        table_rows={t.name: manifest.rows(t.name) for t in spec.tables},
        removed_orphans=removed,
    )


def find_sources(raw_dir: Path, spec: DatasetSpec) -> list[tuple[TableSpec, Path]]:
    """(table, file) of every file of `raw_dir` a spec table's globs match, in the spec's ingest
    order (a table after the tables it refers to, the events last)."""
    if not raw_dir.is_dir():
        raise IngestError(f"raw data folder {raw_dir} does not exist")
    found = [
        (table, path)
        for table in spec.ingest_order
        for path in sorted({p for g in table.files for p in raw_dir.glob(g)})
    ]
    odd = [
        f"{path.name} ({table.name}) {what}" for table, path in found if (what := _not_a_file(path))
    ]
    if odd:
        raise IngestError(
            f"{raw_dir}: {'; '.join(odd)}; a source must be a regular file (or a link to one); "
            "nothing was added to the lake"
        )
    if not found:
        globs = {t.name: t.files for t in spec.tables}
        raise IngestError(f"{raw_dir} holds no file of dataset {spec.name!r} (tables: {globs})")
    return found


def _not_a_file(path: Path) -> str | None:
    """What `path` is when it is not a readable regular file (a link to one is fine), else None."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"is a symbolic link loop ({path.name} -> {path.readlink()} -> ...)"
        if path.is_symlink():
            return f"is a broken symbolic link (to {path.readlink()}, which does not exist)"
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a file"
    return "is not a regular file (a device, pipe or socket)"


def lake_columns(table: TableSpec) -> list[str]:
    """Columns of a spec table in the lake, in order."""
    return [*table.column_names, "source_file", "line_number"]


def check_lake_columns(root: Path, table: TableSpec) -> None:
    """Raise `IngestError` when the lake table was written with other columns than `table` has."""
    files = table_files(root, table.name)
    if not files:
        return
    found = pq.read_schema(files[0]).names
    if found != lake_columns(table):
        raise IngestError(
            f"the lake table {root / table.name} has columns {found}, the spec gives "
            f"{lake_columns(table)}; a spec with other columns needs a new dataset name (or "
            "delete the lake and ingest again)"
        )


def fast_parser(table: TableSpec, max_line_bytes: int) -> FastParser | None:
    """The fast parser for the files of `table`, or None when its shape has none.

    The shape: CSV without header or quoting, an ASCII delimiter (not `whitespace`), columns of
    type int32, int64 or string, and no null spelling made of digits (an integer field is never
    a null there).
    """
    delimiter = table.delimiter
    if (
        table.format != "csv"
        or delimiter == WHITESPACE
        or table.header
        or table.quote is not None
        or not delimiter.isascii()
        or any(n.isdigit() for n in table.null_values)
        or any(c.type not in _ARROW_TYPES for c in table.columns)
    ):
        return None
    types = {c.name: _ARROW_TYPES[c.type] for c in table.columns}
    if int_delimiter(delimiter) and all(pa.types.is_integer(t) for t in types.values()):
        return lambda data, first: parse_int_lines(data, first, types, max_line_bytes, delimiter)
    encoding, nulls = table.encoding, table.null_values
    return lambda data, first: parse_text_lines(
        data, first, types, max_line_bytes, encoding, delimiter, nulls
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
        spec: DatasetSpec,
    ) -> None:
        self.root = root
        self.quarantine_root = quarantine_root
        self.date = date
        self.config = config
        self.manifest = manifest
        self.spec = spec
        self.tables = {t.name: t for t in spec.tables}
        self.references = foreign.references(spec)
        self.referenced = {j.table for joins in self.references.values() for j in joins}
        now = datetime.now(UTC)
        self.run_id = f"{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        self.bounds = TimeBounds.of(spec.timestamp, config, now)
        self.staging = root / f"{STAGING_PREFIX}{self.run_id}"
        (self.staging / "tmp").mkdir(parents=True)
        self._session = Background(
            lambda: open_session(config.duckdb, temp_directory=self.staging / "tmp"),
            "ingest-connect",
        )
        self.schemas: dict[str, pandera.DataFrameSchema] = {}
        self.staged_keys: dict[Path, pa.Table] = {}  # key columns of clean staged files
        self.rejected: dict[str, foreign.Rejected] = {}
        # (table, source sha256) -> line numbers this run quarantined
        self.quarantined_lines: dict[
            tuple[str, str], pa.ChunkedArray | pa.Array
        ] = {}  # quarantined keys of referenced tables
        self.reports: list[SourceReport] = []
        self.entries: list[SourceEntry] = []
        self.staged: dict[str, list[Path]] = {t.name: [] for t in spec.tables}
        self.quarantine_files: list[Path] = []
        self.shas: dict[Path, str] = {}
        self.prefetched: Prefetch | None = None
        # Clean files still being written, per table: joined before the table's staged files
        # are read, and before commit.
        self.writes: dict[str, list[Background]] = {}

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The run's connection (opened in the background while the first file is read)."""
        session: Session = self._session.result()
        return session.con

    def prefetch(self, sources: list[tuple[TableSpec, Path]]) -> None:
        """Start reading and parsing the events' new fast-path files in a background thread.

        They are read while the main thread ingests the dimension tables; hashing, gzip, and
        Arrow's CSV reader release the GIL. Files the manifest lists (or that repeat an earlier
        file of this run) are left out, as `ingest_source` skips them.
        """
        todo: list[tuple[str, Path]] = []
        for table, path in sources:
            if table.name != self.spec.events or self._parser(table) is None:
                continue
            sha = self.shas[path] = file_sha256(path)
            if self.manifest.has_source(table.name, sha) or any(
                t == table.name and self.shas[p] == sha for t, p in todo
            ):
                continue
            todo.append((table.name, path))
        if todo:
            self.prefetched = Prefetch(todo, self._batches)

    def ingest_source(self, table: TableSpec, path: Path) -> None:
        """Ingest one file of `table` into the staging folder (or skip it, if known)."""
        sha = self.shas.get(path) or file_sha256(path)
        report = SourceReport(table=table.name, path=path, sha256=sha)
        self.reports.append(report)
        if self.manifest.has_source(table.name, sha) or any(
            e.table == table.name and e.sha256 == sha for e in self.entries
        ):
            report.status = "skipped"
            report.messages.append(
                f"{path.name}: already ingested (same content, sha256 {sha[:12]}), nothing added"
            )
            return
        partial = self.manifest.partial_source(table.name, path.name)
        if partial is not None:
            report.completes = partial.sha256
            report.messages.append(
                f"{path.name}: completes the partial {path.name} of run {partial.run_id} "
                f"({partial.rows:,} rows went in then); only the missing rows are added"
            )
        if self._parser(table) is not None:
            typed = self._read_fast(table, path, report)
            if typed and self._write_clean(table, path, report, typed):
                return
        self._ingest_exact(table, path, report)

    # -- fast path -----------------------------------------------------------------------------

    def _parser(self, table: TableSpec) -> FastParser | None:
        return fast_parser(table, self.config.max_line_bytes) if self.config.fast_path else None

    def _batches(
        self, table: str, path: Path, stats: LineStats
    ) -> Iterator[LineBatch | TypedBatch]:
        spec = self.tables[table]
        chunk, max_line = self.config.chunk_mib << 20, self.config.max_line_bytes
        return iter_batches(path, spec.encoding, chunk, max_line, stats, self._parser(spec))

    def _read_fast(self, table: TableSpec, path: Path, report: SourceReport) -> list[pa.Table]:
        """The file's rows, typed by the fast parser; [] when a batch needs the exact path."""
        stats = LineStats()
        ahead = self.prefetched
        if ahead is not None and ahead.has(table.name, path):
            batches, prefetched = ahead.batches(table.name, path, stats), True
        else:
            batches, prefetched = self._batches(table.name, path, stats), False
        typed: list[pa.Table] = []
        exact = False
        try:
            for batch in batches:
                if isinstance(batch, TypedBatch):
                    typed.append(batch.table)
                    report.fast_batches += 1
                    continue
                exact = True
                if not prefetched:  # a prefetched file is read to its end, in order
                    break
        except RawFileError as exc:
            raise IngestError(f"{exc}; nothing was added to the lake") from None
        if exact or not typed:  # the exact path reads the file again and reports on it
            return []
        record_line_stats(path.name, stats, report)
        return typed

    def _write_clean(
        self, table: TableSpec, path: Path, report: SourceReport, typed: list[pa.Table]
    ) -> bool:
        """Write fast-parsed rows as they are if all are new, unique and valid; else False."""
        rows = pa.concat_tables(typed)
        part = self._part()
        target = self.staging / table.name / part
        # The file is written while the checks run (and while the next file is read, if they
        # pass); it is removed if a check fails.
        writing = Background(lambda: self._copy_clean(table, path, rows, target), "ingest-write")
        try:
            clean = self._all_clean(table, rows)
        except BaseException:
            with contextlib.suppress(Exception):  # the check's error is the one to raise
                writing.result()
            raise
        if not clean:
            writing.result()
            target.unlink(missing_ok=True)
            return False
        self.writes.setdefault(table.name, []).append(writing)
        report.kept, report.fast = rows.num_rows, True
        if table.name in self.referenced:
            self.staged_keys[target] = rows.select(table.key_columns)
        self.staged[table.name].append(target)
        self._record(table.name, path, report, [f"{table.name}/{part}"])
        return True

    def _copy_clean(self, table: TableSpec, path: Path, rows: pa.Table, target: Path) -> None:
        """COPY clean rows to `target` on a cursor of its own (runs beside the checks)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        with self.con.cursor() as cursor:
            cursor.register("clean", rows)
            cursor.execute(load_sql("ingest/source_type"), {"source": path.name})
            params = {"path": str(target), "source": path.name, "columns": table.column_names}
            cursor.execute(load_sql("ingest/write_clean"), params)

    def _all_clean(self, table: TableSpec, rows: pa.Table) -> bool:
        """No key twice, pandera accepts every row, every foreign key is known, none in the lake.

        The key check runs here, not in a thread beside pandera: its numpy calls give up the
        GIL and then wait for pandera's Python to hand it back, so in a thread it took longer
        than pandera itself.
        """
        if _keys_repeat(rows, table.key_columns):
            return False
        if table.name == self.spec.events and not self.bounds.all_within(
            rows.column(self.bounds.column)
        ):
            return False
        # One block per column: pandas then views the Arrow buffers (no copy, no fresh pages).
        frame = rows.select(table.column_names).to_pandas(split_blocks=True)
        if failure_reasons(self._schema(table), frame):
            return False
        for join in self.references.get(table.name, []):
            if foreign.unknown(rows.select(join.key), join.key, self._known(join)).num_rows:
                return False
        files = self._visible_files(table.name)
        if files:
            self.con.register("clean", rows)
            try:
                params = {"files": files, "keys": table.key_columns}
                found = self.con.execute(load_sql("ingest/clean_in_lake"), params).fetchall()
                return bool(found == [(0,)])
            finally:
                self.con.unregister("clean")
        return True

    # -- exact path ----------------------------------------------------------------------------

    def _ingest_exact(self, table: TableSpec, path: Path, report: SourceReport) -> None:
        ExactReader(self.con, table, self.config).stage(path, report)
        self.con.execute(load_sql("ingest/dedup"))
        existing = self._visible_files(table.name)
        if existing:
            params = {"files": existing, "keys": table.key_columns, "columns": table.column_names}
            self.con.execute(load_sql("ingest/lake_match"), params)
        self._validate(table)
        self._check_references(table, report)
        unit = "row" if table.format == "parquet" else "line"
        self._collect(path, report, unit)
        if table.name in self.referenced and report.quarantined:
            params = {"keys": table.key_columns}
            rows = self.con.sql(load_sql("ingest/quarantined_keys"), params=params).to_arrow_table()
            rejected = self.rejected.setdefault(table.name, {})
            foreign.rejected_keys(rows, table.key_columns, path.name, rejected)
        self._write(table, path, report)

    def _validate(self, table: TableSpec) -> None:
        frame = self.con.execute(load_sql("ingest/candidates")).df().set_index("line_number")
        if frame.empty:
            return
        reasons = failure_reasons(self._schema(table), frame)
        if table.name == self.spec.events:
            column = frame[self.bounds.column]
            late = self.bounds.reasons(frame.index.to_numpy(), column)
            for line, reason in late.items():  # a row the spec's rules refused says that
                reasons.setdefault(line, reason)
        self._reject(reasons)

    def _check_references(self, table: TableSpec, report: SourceReport) -> None:
        """Quarantine staged rows whose join key the joined table lacks (see the module doc);
        count their causes into `report.root_causes`."""
        found: dict[int, list[str]] = {}
        for join in self.references.get(table.name, []):
            params = {"keys": join.key}
            rows = self.con.sql(load_sql("ingest/candidate_keys"), params=params).to_arrow_table()
            known = self._known(join)
            missing = foreign.unknown(rows, join.key, known)
            order = self.tables[join.table].key_columns
            rejected = self.rejected.get(join.table, {})
            empty = None
            if not known.num_rows:
                empty = f"{self._empty_reason(join.table)}, so {join.table} has no row"
            why = foreign.reasons(missing, join, order, empty, rejected)
            for line, reason in zip(missing.column("line_number").to_pylist(), why, strict=True):
                found.setdefault(int(line), []).append(reason)
                report.root_causes[reason] = report.root_causes.get(reason, 0) + 1
        self._reject({line: "; ".join(parts) for line, parts in found.items()})

    def _empty_reason(self, table: str) -> str:
        """Why the joined `table` has no row (see `foreign.empty_reason`)."""
        sources = [(r.path.name, r.rows_seen) for r in self.reports if r.table == table]
        return foreign.empty_reason(table, self.tables[table].files, sources)

    def _reject(self, reasons: dict[int, str]) -> None:
        """Quarantine staged rows: line number -> reason."""
        if not reasons:
            return
        rejected = pd.DataFrame(
            {"line_number": np.fromiter(reasons, dtype=np.int64), "reason": list(reasons.values())}
        )
        self.con.register("rejected", rejected)
        self.con.execute(load_sql("ingest/apply_reasons"))
        self.con.unregister("rejected")

    def _collect(self, path: Path, report: SourceReport, unit: str) -> None:
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
            reasons = self.con.execute(load_sql("ingest/staged_reasons")).fetchall()
            report.reasons = {str(r): int(n) for r, n in reasons}
            shown = self.con.execute(
                load_sql("ingest/first_problems"), {"limit": _SHOWN_PROBLEMS}
            ).fetchall()
            report.problems = [f"{name} {unit} {n}: {reason}" for n, reason in shown]
            report.messages.append(
                f"{name}: quarantined {report.quarantined} {unit}(s); first: {report.problems[0]}"
            )

    def _write(self, table: TableSpec, path: Path, report: SourceReport) -> None:
        """Write the staged file's kept and quarantined rows; record its manifest entry."""
        part = self._part()
        files: list[str] = []
        if report.kept:
            target = self.staging / table.name / part
            target.parent.mkdir(parents=True, exist_ok=True)
            self.con.execute(load_sql("ingest/source_type"), {"source": path.name})
            params = {"path": str(target), "source": path.name, "columns": table.column_names}
            self.con.execute(load_sql("ingest/write"), params)
            self.staged[table.name].append(target)
            files.append(f"{table.name}/{part}")
        if report.quarantined:
            self._quarantine(table, path, report, part)
        self._record(table.name, path, report, files)

    def _quarantine(self, table: TableSpec, path: Path, report: SourceReport, part: str) -> None:
        """Write the staged file's quarantined rows that no earlier run recorded (same sha256,
        same line): rerunning a failing input leaves the quarantine as it is."""
        lines = self.con.sql(load_sql("ingest/quarantined_lines")).to_arrow_table()
        self.quarantined_lines[(table.name, report.sha256)] = lines.column("line_number")
        recorded = recorded_lines(self.quarantine_root, table.name, report.sha256)
        self.con.register("recorded", recorded)
        try:
            new = int(self.con.execute(load_sql("ingest/quarantine_new")).fetchall()[0][0])
            report.quarantine_recorded = report.quarantined - new
            if report.quarantine_recorded:
                report.messages.append(
                    f"{path.name}: {report.quarantine_recorded} quarantined line(s) were "
                    "recorded by an earlier run of the same file; not recorded again"
                )
            if not new:
                return
            target = self.staging / "quarantine" / table.name / part
            target.parent.mkdir(parents=True, exist_ok=True)
            params = {
                "path": str(target),
                "source": path.name,
                "sha": report.sha256,
                "table": table.name,
            }
            self.con.execute(load_sql("ingest/quarantine"), params).fetchall()
            self.quarantine_files.append(target)
        finally:
            self.con.unregister("recorded")

    # -- shared --------------------------------------------------------------------------------

    def _schema(self, table: TableSpec) -> pandera.DataFrameSchema:
        if table.name not in self.schemas:
            self.schemas[table.name] = spec_schema(table)
        return self.schemas[table.name]

    def _known(self, join: JoinSpec) -> pa.Table:
        """The key columns (`join.key`) of the joined table: its lake and this run's rows."""
        paths = table_files(self.root, join.table) + self.staged[join.table]
        parts = [
            self.staged_keys[p] if p in self.staged_keys else pq.read_table(p, columns=join.key)
            for p in paths
        ]
        if not parts:  # no type needed: nothing is compared with an empty table
            return pa.table({k: pa.array([], pa.null()) for k in join.key})
        return pa.concat_tables([p.select(join.key) for p in parts], promote_options="permissive")

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

    def _part(self) -> str:
        """Relative path of the next source's Parquet file (per table folder)."""
        return f"ingest_date={self.date}/part-{self.run_id}-{len(self.entries):03d}.parquet"

    def _record(self, table: str, path: Path, report: SourceReport, files: list[str]) -> None:
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
                partial=report.truncated,
                completes=report.completes,
            )
        )

    def check_outcome(self, raw_dir: Path) -> None:
        """Raise `BadShareError` (after keeping the quarantine) if a table has too many bad rows,
        `EmptyTableError` if a table would have no row after this run (the lake would fail
        validation): a run commits every table or none."""
        limit = self.config.max_bad_share
        failures: list[str] = []
        empty: list[str] = []
        for table in self.staged:
            reports = [r for r in self.reports if r.table == table]
            if not self.manifest.rows(table) and not sum(r.kept for r in reports):
                empty.append(f"{table} would have no row: {self._empty_reason(table)}")
        for table in self.staged:
            done = [r for r in self.reports if r.table == table and r.status == "ingested"]
            seen = sum(r.rows_seen for r in done)
            bad = sum(r.quarantined for r in done)
            if seen and bad / seen > limit:
                failures.append(
                    f"{table}: {bad:,} of {seen:,} rows quarantined ({bad / seen:.2%}) "
                    f"> limit {limit:.2%}"
                )
        if not failures and not empty:
            return
        self._move_quarantine()
        problems = [p for r in self.reports for p in r.problems][:_SHOWN_PROBLEMS]
        shown = f" First problems: {' | '.join(problems)}." if problems else ""
        error = BadShareError if failures else EmptyTableError
        raise error(
            f"ingest of {raw_dir} failed: {'; '.join(failures + empty)}.{shown} "
            f"Quarantine: {self.quarantine_root}. Nothing was added to the lake (a run commits "
            "every table or none).",
            run_id=self.run_id,
            sources=self.reports,
            table_rows={t: self.manifest.rows(t) for t in self.tables},
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
        self._prune_quarantine()

    def _prune_quarantine(self) -> None:
        """Drop the quarantine rows an earlier (failed) run recorded for a source this run
        committed, where this run did not quarantine that line: they went in (or were dropped
        as duplicates) this time, so the quarantine holds only what is out of the lake."""
        for report in self.reports:
            if report.status != "ingested":
                continue
            keep = self.quarantined_lines.get(
                (report.table, report.sha256), pa.array([], pa.int64())
            )
            gone = prune_quarantine(self.quarantine_root, report.table, report.sha256, keep)
            if gone:
                report.quarantine_pruned = gone
                report.messages.append(
                    f"{report.path.name}: {gone} row(s) an earlier failed run quarantined went in "
                    "this time; removed from the quarantine"
                )

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


def _keys_repeat(rows: pa.Table, keys: list[str]) -> bool:
    """Whether two rows of `rows` have the same `keys`."""
    if all(pa.types.is_integer(rows.schema.field(k).type) for k in keys):
        repeat = keys_repeat([rows.column(k).to_numpy() for k in keys])
        if repeat is not None:
            return repeat
    return rows.select(keys).group_by(keys).aggregate([]).num_rows < rows.num_rows
