"""Click logs described by a dataset spec (CSV or Parquet) -> the same validated Parquet lake.

Same contract as the MovieLens ingest (`ingest.py`, whose run machinery this reuses): one lake
table per spec table, `<data_root>/lake/<spec.name>/<table>/ingest_date=.../*.parquet`, with the
table's columns, `source_file` and `line_number`; one run ingests every table (dimension tables
first, the events last) and commits all of them or nothing; a manifest of content hashes (a
file ingested before adds nothing); duplicates inside a file kept once and counted; rows failing
the spec's rules quarantined with source file, line number (CSV: physical line, 1-based; Parquet:
row index, 0-based) and reason; nothing renamed into the lake unless every file went through
within the bad-share limit. Per file: CSV lines are numbered and byte-checked by `lines.py`, split
and cast in SQL (`sql/ingest/spec_*.sql`); Parquet columns are read with pyarrow and cast by the
same SQL.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flip_core.config import IngestConfig
from flip_core.hashing import file_sha256
from flip_core.lake.ingest import (
    IngestError,
    IngestResult,
    SourceReport,
    _lake_lock,
    _Run,
    record_line_stats,
)
from flip_core.lake.lines import LineStats, RawFileError, iter_line_batches
from flip_core.lake.manifest import (
    LakeManifest,
    SourceEntry,
    lake_dir,
    load_manifest,
    quarantine_dir,
    remove_orphans,
    table_files,
)
from flip_core.lake.schemas import failure_reasons
from flip_core.lake.spec_schema import spec_schema
from flip_core.spec import DatasetSpec, TableSpec
from flip_core.sql import load_sql

_PARQUET_ROWS = 1 << 16
_WHAT = {
    "int32": "an integer",
    "int64": "an integer",
    "float64": "a number",
    "bool": "a boolean",
    "timestamp": "a timestamp",
}


def find_spec_sources(raw_dir: Path, spec: DatasetSpec) -> list[tuple[TableSpec, Path]]:
    """(table, file) of every file of `raw_dir` a spec table's globs match, in ingest order."""
    if not raw_dir.is_dir():
        raise IngestError(f"raw data folder {raw_dir} does not exist")
    found = [
        (table, path)
        for table in spec.ingest_order
        for path in sorted({p for g in table.files for p in raw_dir.glob(g) if p.is_file()})
    ]
    if not found:
        globs = {t.name: t.files for t in spec.tables}
        raise IngestError(f"{raw_dir} holds no file of dataset {spec.name!r} (tables: {globs})")
    return found


def ingest_spec_dir(
    raw_dir: Path,
    data_root: Path,
    spec: DatasetSpec,
    config: IngestConfig | None = None,
    ingest_date: str | None = None,
) -> IngestResult:
    """Ingest the files of `raw_dir` that `spec` matches into `<data_root>/lake/<spec.name>`.

    Raises `BadShareError` when the quarantined share passes `config.max_bad_share`,
    `IngestError` on unreadable input; in both cases the lake is left as it was.
    """
    config = config or IngestConfig()
    date = ingest_date or config.ingest_date or datetime.now(UTC).date().isoformat()
    try:
        datetime.strptime(date, "%Y-%m-%d")
    except ValueError:
        raise IngestError(f"ingest date {date!r} is not a YYYY-MM-DD date") from None
    root = lake_dir(data_root, spec.name)
    root.mkdir(parents=True, exist_ok=True)
    with _lake_lock(root):
        manifest = load_manifest(root, spec.name)
        removed = remove_orphans(root, manifest)
        for table in spec.tables:
            check_lake_columns(root, table)
        run = _SpecRun(root, quarantine_dir(data_root, spec.name), date, config, manifest, spec)
        try:
            for table, path in find_spec_sources(raw_dir, spec):
                run.ingest_source(table.name, path)
            run.check_bad_share(raw_dir)
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


class _SpecRun(_Run):
    """An ingest run over spec files: parse, cast, dedup, validate, write."""

    def __init__(
        self,
        root: Path,
        quarantine_root: Path,
        date: str,
        config: IngestConfig,
        manifest: LakeManifest,
        spec: DatasetSpec,
    ) -> None:
        super().__init__(root, quarantine_root, date, config, manifest)
        self.tables = {t.name: t for t in spec.tables}
        self.spec = spec.tables[0]  # the table of the file being ingested
        self.staged = {t.name: [] for t in spec.tables}
        self.indexes: list[int] = []  # 1-based field of each spec column in the current file

    @property
    def unit(self) -> str:
        """What a source position counts: CSV lines or Parquet rows."""
        return "row" if self.spec.format == "parquet" else "line"

    def ingest_source(self, table: str, path: Path) -> None:
        self.spec = self.tables[table]
        sha = file_sha256(path)
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
        self.con.execute(load_sql("ingest/spec_stage_parsed"))
        if self.spec.format == "csv":
            self._spec_parse_csv(path, report)
        else:
            self._spec_parse_parquet(path, report)
        self._spec_stage()
        self._deduplicate_spec(table)
        self._validate_spec()
        self._collect(path, report, self.unit)
        self._write_spec(table, path, report)

    # -- reading -------------------------------------------------------------------------------

    def _spec_parse_csv(self, path: Path, report: SourceReport) -> None:
        spec = self.spec
        stats = LineStats()
        batches = iter_line_batches(
            path, spec.encoding, self.config.chunk_mib << 20, self.config.max_line_bytes, stats
        )
        expected = len(spec.columns)
        self.indexes = list(range(1, expected + 1))
        header_pending = spec.header
        try:
            for batch in batches:
                table = batch.table
                if header_pending:
                    expected = self._spec_header(path, table)
                    table, header_pending = table.slice(1), False
                table = table.append_column("quoted", self._spec_quoted(table))
                self.con.register("batch", table)
                params = {"delimiter": spec.delimiter, "expected": expected}
                self.con.execute(load_sql("ingest/spec_parse_csv"), params)
                self.con.unregister("batch")
        except RawFileError as exc:
            raise IngestError(f"{exc}; nothing was added to the lake") from None
        record_line_stats(path.name, stats, report)

    def _spec_header(self, path: Path, table: pa.Table) -> int:
        """Map the spec's columns onto the header (first non-blank line); return its width."""
        number = table["line_number"][0].as_py()
        issue = table["issue"][0].as_py()
        if issue:
            raise IngestError(f"{path.name} line {number} (header): {issue}")
        text = str(table["line"][0].as_py()).rstrip("\r\n").lstrip("\ufeff")
        names = [n.strip() for n in self._spec_split(text)]
        missing = [c.source_name for c in self.spec.columns if c.source_name not in names]
        if missing:
            raise IngestError(
                f"{path.name} line {number} (header): no column {', '.join(map(repr, missing))} "
                f"(header has {names[:20]}; delimiter {self.spec.delimiter!r}); "
                "nothing was added to the lake"
            )
        self.indexes = [names.index(c.source_name) + 1 for c in self.spec.columns]
        return len(names)

    def _spec_split(self, text: str) -> list[str]:
        spec = self.spec
        if spec.quote is None or spec.quote not in text:
            return text.split(spec.delimiter)
        return next(csv.reader([text], delimiter=spec.delimiter, quotechar=spec.quote))

    def _spec_quoted(self, table: pa.Table) -> pa.Array:
        """Fields of the lines that contain the quote character (others: null, split in SQL)."""
        count = table.num_rows
        quote = self.spec.quote
        if quote is None or not count:
            return pa.nulls(count, pa.list_(pa.string()))
        has_quote = pc.fill_null(pc.match_substring(table["line"], quote), False)
        rows = np.flatnonzero(has_quote.to_numpy(zero_copy_only=False))
        if not len(rows):
            return pa.nulls(count, pa.list_(pa.string()))
        values: list[list[str] | None] = [None] * count
        lines = table["line"].take(pa.array(rows)).to_pylist()
        for row, line in zip(rows.tolist(), lines, strict=True):
            values[row] = self._spec_split(str(line).rstrip("\r\n"))
        return pa.array(values, pa.list_(pa.string()))

    def _spec_parse_parquet(self, path: Path, report: SourceReport) -> None:
        try:
            reader = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise IngestError(f"{path.name}: not a readable Parquet file ({exc})") from None
        names = reader.schema_arrow.names
        sources = [c.source_name for c in self.spec.columns]
        missing = [s for s in sources if s not in names]
        if missing:
            raise IngestError(
                f"{path.name}: no column {', '.join(map(repr, missing))} (file has {names[:20]}); "
                "nothing was added to the lake"
            )
        self.indexes = list(range(1, len(sources) + 1))
        first = 0
        try:
            for batch in reader.iter_batches(batch_size=_PARQUET_ROWS, columns=sources):
                self.con.register("batch", _fields_table(path, batch, sources, first))
                self.con.execute(load_sql("ingest/spec_parse_parquet"))
                self.con.unregister("batch")
                first += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise IngestError(f"{path.name}: cannot read row {first}+ ({exc})") from None
        report.lines = first
        if not first:
            report.messages.append(f"{path.name}: empty file, nothing to ingest")

    # -- typing, staging -----------------------------------------------------------------------

    def _spec_stage(self) -> None:
        rows = self.con.sql(load_sql("ingest/spec_rows")).to_arrow_table()
        columns: dict[str, pa.Array] = {"line_number": _array(rows["line_number"])}
        problems = [_array(rows["reason"])]
        for column, index in zip(self.spec.columns, self.indexes, strict=True):
            params: dict[str, object] = {"index": index, "nulls": self.spec.null_values}
            if column.type != "string":
                params["name"] = column.name
            query = load_sql(f"ingest/spec_cast_{column.type}")
            cast = self.con.sql(query, params=params).to_arrow_table()
            values, problem = _array(cast["v"]), _array(cast["problem"])
            columns[column.name] = values
            problems.append(problem)
            if not column.nullable:
                problems.append(_null_problem(column.name, values, problem, problems[0]))
        reason = _join_problems(problems)
        columns["text"] = _array(rows["text"])
        columns["reason"] = reason
        self.con.register("typed", pa.table(columns))
        params = {"keys": self.spec.key_columns, "columns": self.spec.column_names}
        self.con.execute(load_sql("ingest/spec_stage"), params)
        self.con.unregister("typed")

    def _deduplicate_spec(self, table: str) -> None:
        self.con.execute(load_sql("ingest/spec_dedup"))
        existing = self._visible_files(table)
        if existing:
            params = {
                "files": existing,
                "keys": self.spec.key_columns,
                "columns": self.spec.column_names,
            }
            self.con.execute(load_sql("ingest/spec_lake_match"), params)

    def _validate_spec(self) -> None:
        frame = self.con.execute(load_sql("ingest/spec_candidates")).df().set_index("line_number")
        if frame.empty:
            return
        reasons = failure_reasons(spec_schema(self.spec), frame)
        if not reasons:
            return
        rejected = pd.DataFrame(
            {"line_number": np.fromiter(reasons, dtype=np.int64), "reason": list(reasons.values())}
        )
        self.con.register("rejected", rejected)
        self.con.execute(load_sql("ingest/apply_reasons"))
        self.con.unregister("rejected")

    # -- outcome -------------------------------------------------------------------------------

    def _write_spec(self, table: str, path: Path, report: SourceReport) -> None:
        part = f"ingest_date={self.date}/part-{self.run_id}-{len(self.entries):03d}.parquet"
        files: list[str] = []
        if report.kept:
            target = self.staging / table / part
            target.parent.mkdir(parents=True, exist_ok=True)
            params = {"path": str(target), "source": path.name, "columns": self.spec.column_names}
            self.con.execute(load_sql("ingest/spec_write"), params)
            self.staged[table].append(target)
            files.append(f"{table}/{part}")
        if report.quarantined:
            target = self.staging / "quarantine" / table / part
            target.parent.mkdir(parents=True, exist_ok=True)
            params = {"path": str(target), "source": path.name, "table": table}
            self.con.execute(load_sql("ingest/spec_quarantine"), params)
            self.quarantine_files.append(target)
        self._spec_entry(table, path, report, files)

    def _spec_entry(self, table: str, path: Path, report: SourceReport, files: list[str]) -> None:
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


def _fields_table(path: Path, batch: pa.RecordBatch, sources: list[str], first: int) -> pa.Table:
    """A Parquet batch as (line_number = row index, fields = the columns as text)."""
    count = batch.num_rows
    texts = []
    for name in sources:
        column = batch.column(name)
        try:
            texts.append(pc.cast(column, pa.string()))
        except pa.ArrowException:
            raise IngestError(
                f"{path.name}: column {name!r} has type {column.type}, which cannot be read as "
                "text; nothing was added to the lake"
            ) from None
    width = len(texts)
    values = pa.concat_arrays(texts) if texts else pa.array([], pa.string())
    order = (np.arange(count)[:, None] + np.arange(width)[None, :] * count).ravel()
    offsets = pa.array(np.arange(0, count * width + 1, width, dtype=np.int32))
    fields = pa.ListArray.from_arrays(offsets, values.take(pa.array(order)))
    numbers = pa.array(np.arange(first, first + count, dtype=np.int64))
    return pa.table({"line_number": numbers, "fields": fields})


def _array(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _null_problem(name: str, values: pa.Array, cast: pa.Array, parse: pa.Array) -> pa.Array:
    """`<name>: missing value` where a parsed row has no value in a non-nullable column."""
    missing = pc.and_(pc.and_(pc.is_null(values), pc.is_null(cast)), pc.is_null(parse))
    message = pa.scalar(f"{name}: missing value (column is not nullable)")
    return pc.if_else(missing, message, pa.scalar(None, pa.string()))


def _join_problems(parts: list[pa.Array]) -> pa.Array:
    """Per row: the non-null problems joined by '; ', or null when there is none."""
    if len(parts) == 1:
        return parts[0]
    valid = [pc.is_valid(p).to_numpy(zero_copy_only=False) for p in parts]
    rows = np.flatnonzero(np.logical_or.reduce(valid))
    if not len(rows):
        return pa.nulls(len(parts[0]), pa.string())
    texts = [p.take(pa.array(rows)).to_pylist() for p in parts]
    out: list[str | None] = [None] * len(parts[0])
    for i, row in enumerate(rows.tolist()):
        out[row] = "; ".join(t[i] for t in texts if t[i] is not None)
    return pa.array(out, pa.string())
