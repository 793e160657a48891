"""The exact path: one raw file, line by line, into the staging table with each row's problems.

CSV lines are numbered and byte-checked by `lines.py`, split and cast in SQL
(`sql/ingest/*.sql`); Parquet columns are read with pyarrow and cast by the same SQL. The
result is the temp table `staged`: line number, the spec's columns, the raw text, the reason a
row cannot go in (or null), `_key` and `_row` (the key and all columns, packed for matching).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flip_core.config import IngestConfig
from flip_core.lake.lines import LineStats, RawFileError, iter_line_batches
from flip_core.lake.reports import IngestError, SourceReport, record_line_stats
from flip_core.spec import WHITESPACE, ColumnSpec, TableSpec
from flip_core.sql import load_sql

_PARQUET_ROWS = 1 << 16
INTEGER_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


class ExactReader:
    """Stages the files of one spec table into `staged` (see the module docstring)."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, spec: TableSpec, config: IngestConfig
    ) -> None:
        self.con = con
        self.spec = spec
        self.config = config
        self.indexes: list[int] = []  # 1-based field of each spec column in the current file

    def stage(self, path: Path, report: SourceReport) -> None:
        """Parse, type and stage every row of `path`; fill the report's line counts."""
        self.con.execute(load_sql("ingest/stage_parsed"))
        if self.spec.format == "csv":
            self._parse_csv(path, report)
        else:
            self._parse_parquet(path, report)
        self._stage_typed()

    # -- reading -------------------------------------------------------------------------------

    def _parse_csv(self, path: Path, report: SourceReport) -> None:
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
                    expected = self._header(path, table)
                    table, header_pending = table.slice(1), False
                table = table.append_column("quoted", self._quoted(table))
                self.con.register("batch", table)
                params = {"delimiter": spec.delimiter, "expected": expected}
                self.con.execute(load_sql("ingest/parse_csv"), params)
                self.con.unregister("batch")
        except RawFileError as exc:
            raise IngestError(f"{exc}; nothing was added to the lake") from None
        record_line_stats(path.name, stats, report)

    def _header(self, path: Path, table: pa.Table) -> int:
        """Map the spec's columns onto the header (first non-blank line); return its width."""
        number = table["line_number"][0].as_py()
        issue = table["issue"][0].as_py()
        if issue:
            raise IngestError(f"{path.name} line {number} (header): {issue}")
        text = str(table["line"][0].as_py()).rstrip("\r\n").lstrip("\ufeff")
        names = [n.strip() for n in self._split(text)]
        missing = [c.source_name for c in self.spec.columns if c.source_name not in names]
        if missing:
            raise IngestError(
                f"{path.name} line {number} (header): no column {', '.join(map(repr, missing))} "
                f"(header has {names[:20]}; delimiter {self.spec.delimiter!r}); "
                "nothing was added to the lake"
            )
        self.indexes = [names.index(c.source_name) + 1 for c in self.spec.columns]
        return len(names)

    def _split(self, text: str) -> list[str]:
        spec = self.spec
        if spec.delimiter == WHITESPACE:
            return re.split(r"[ \t]+", text.strip(" \t"))
        if spec.quote is None or spec.quote not in text:
            return text.split(spec.delimiter)
        return next(csv.reader([text], delimiter=spec.delimiter, quotechar=spec.quote))

    def _quoted(self, table: pa.Table) -> pa.Array:
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
            values[row] = self._split(str(line).rstrip("\r\n"))
        return pa.array(values, pa.list_(pa.string()))

    def _parse_parquet(self, path: Path, report: SourceReport) -> None:
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
                self.con.execute(load_sql("ingest/parse_parquet"))
                self.con.unregister("batch")
                first += batch.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise IngestError(f"{path.name}: cannot read row {first}+ ({exc})") from None
        report.lines = first
        if not first:
            report.messages.append(f"{path.name}: empty file, nothing to ingest")

    # -- typing, staging -----------------------------------------------------------------------

    def _cast(self, column: ColumnSpec, index: int) -> pa.Table:
        """Field `index` typed as `column` (`v`) with each row's problem, in line order."""
        params: dict[str, object] = {"index": index, "nulls": self.spec.null_values}
        if column.type == "string":
            return self.con.sql(load_sql("ingest/cast_string"), params=params).to_arrow_table()
        params["name"] = column.name
        if column.type not in INTEGER_RANGES:
            query = load_sql(f"ingest/cast_{column.type}")
            return self.con.sql(query, params=params).to_arrow_table()
        low, high = INTEGER_RANGES[column.type]
        params |= {"type": column.type, "low": low, "high": high}
        cast = self.con.sql(load_sql("ingest/cast_integer"), params=params).to_arrow_table()
        if column.type == "int32":  # in range, so the narrowing is exact
            cast = cast.set_column(0, "v", pc.cast(cast["v"], pa.int32()))
        return cast

    def _stage_typed(self) -> None:
        rows = self.con.sql(load_sql("ingest/rows")).to_arrow_table()
        columns: dict[str, pa.Array] = {"line_number": _array(rows["line_number"])}
        problems = [_array(rows["reason"])]
        for column, index in zip(self.spec.columns, self.indexes, strict=True):
            cast = self._cast(column, index)
            values, problem = _array(cast["v"]), _array(cast["problem"])
            columns[column.name] = values
            problems.append(problem)
            if not column.nullable:
                problems.append(_null_problem(column.name, values, problem, problems[0]))
        columns["text"] = _array(rows["text"])
        columns["reason"] = _join_problems(problems)
        self.con.register("typed", pa.table(columns))
        params = {"keys": self.spec.key_columns, "columns": self.spec.column_names}
        self.con.execute(load_sql("ingest/stage"), params)
        self.con.unregister("typed")


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
