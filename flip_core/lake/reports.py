"""What an ingest run did: per-file reports, the run's result, errors, the quarantine's content."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flip_core.config import DuckDBConfig
from flip_core.lake.duck import open_session
from flip_core.lake.lines import LineStats
from flip_core.layout import DataLayout
from flip_core.sql import load_sql


class IngestError(ValueError):
    """The ingest failed; the message says which file and line, and what to do."""


class RejectedRunError(IngestError):
    """The run read every file but failed validation; nothing was added to the lake (the
    quarantine is kept). `sources`: what happened to each file, for the run summary."""

    def __init__(
        self,
        message: str,
        run_id: str,
        sources: list[SourceReport],
        table_rows: dict[str, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.sources = sources
        self.table_rows = table_rows or {}

    def summary(self) -> str:
        """The run summary (as `IngestResult.summary`) of the failed run: nothing was added."""
        header = f"run {self.run_id} failed validation, nothing was added to the lake:"
        rows = self.table_rows or dict.fromkeys(s.table for s in self.sources)
        return run_summary(header, self.sources, {t: n or 0 for t, n in rows.items()}, False)


class BadShareError(RejectedRunError):
    """Too many rows were quarantined; nothing was added to the lake (the quarantine is kept)."""


class EmptyTableError(RejectedRunError):
    """A table would have no row after the run (its files empty, missing, or every row
    quarantined); nothing was added to the lake (the quarantine is kept)."""


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
    completes: str | None = None  # sha256 of the partial source (same name) this file completes
    bom: bool = False  # began with a UTF-8 byte-order mark, stripped
    fast_batches: int = 0  # batches the fast parser typed
    fast: bool = False  # written by the fast path: every line plain, every row new and valid
    quarantine_recorded: int = 0  # quarantined rows an earlier run recorded (same sha256, line)
    quarantine_pruned: int = 0  # rows an earlier failed run quarantined that went in this time
    reasons: dict[str, int] = field(default_factory=dict)  # quarantined rows per reason
    root_causes: dict[str, int] = field(default_factory=dict)  # rows held by another table's row
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
        """Lines for people, per table: rows added, quarantined by reason, skipped (blank,
        duplicate, already in the lake), root causes; partial sources; notes."""
        header = f"lake {self.lake_dir} (ingest_date={self.ingest_date}, run {self.run_id}):"
        return run_summary(header, self.sources, self.table_rows)


_TOP_REASONS = 5


def run_summary(
    header: str, sources: list[SourceReport], table_rows: dict[str, int], committed: bool = True
) -> str:
    """The run summary of `sources` (see `IngestResult.summary`); `table_rows`: lake rows per
    table after the run (every table of the spec, in order); `committed`: False for a failed
    run (its valid rows were not added)."""
    lines = [header]
    for table in table_rows:
        done = [s for s in sources if s.table == table]
        added = sum(s.kept for s in done if s.status == "ingested")
        bad = sum(s.quarantined for s in done)
        rows = f"+{added:,} rows" if committed else f"{added:,} valid rows not added"
        lines.append(
            f"  {table}: {rows}, {bad:,} quarantined, {table_rows.get(table, 0):,} in the lake"
        )
        lines += _top_counts(
            "quarantined by reason", "more reasons", _merge([s.reasons for s in done])
        )
        lines += _top_counts(
            "root causes (rows held by a row of another table)",
            "more",
            _merge([s.root_causes for s in done]),
        )
        skipped = {
            "blank line(s)": sum(s.blank_lines for s in done),
            "duplicate line(s) kept once": sum(s.duplicates for s in done),
            "row(s) already in the lake": sum(s.already_in_lake for s in done),
            "file(s) ingested before": sum(s.status == "skipped" for s in done),
        }
        if any(skipped.values()):
            lines.append(
                "    skipped: " + ", ".join(f"{n:,} {what}" for what, n in skipped.items() if n)
            )
        for s in done:
            if s.truncated:
                lines.append(
                    f"    partial: {s.path.name} (gzip truncated after line {s.lines:,}; "
                    f"{s.kept:,} rows kept; tagged partial in the manifest, a complete file of "
                    "the same name adds the rest)"
                )
            if s.completes:
                lines.append(
                    f"    completes: {s.path.name} completes the partial file of the same name "
                    f"(+{s.kept:,} missing rows)"
                )
    lines += [f"  note: {m}" for s in sources for m in s.messages]
    return "\n".join(lines)


def _merge(counts: list[dict[str, int]]) -> dict[str, int]:
    """Counts summed over `counts`, most frequent first (then by text)."""
    total: dict[str, int] = {}
    for part in counts:
        for key, n in part.items():
            total[key] = total.get(key, 0) + n
    return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


def table_reasons(sources: list[SourceReport]) -> dict[str, dict[str, int]]:
    """Per table: quarantined rows per reason (offending values stripped), most first."""
    tables = dict.fromkeys(s.table for s in sources)
    return {t: _merge([s.reasons for s in sources if s.table == t]) for t in tables}


def table_root_causes(sources: list[SourceReport]) -> dict[str, dict[str, int]]:
    """Per table: rows quarantined because of a row (or the emptiness) of another table."""
    tables = dict.fromkeys(s.table for s in sources)
    return {t: _merge([s.root_causes for s in sources if s.table == t]) for t in tables}


def record_line_stats(name: str, stats: LineStats, report: SourceReport) -> None:
    """Copy a file's line counts into its report, with a message for each oddity."""
    report.lines = stats.lines
    report.blank_lines = stats.blank_count
    report.crlf_lines = stats.crlf_lines
    report.truncated = stats.truncated
    report.bom = stats.bom
    if stats.bom:
        report.messages.append(
            f"{name}: starts with a UTF-8 byte-order mark (BOM); stripped, line 1 read without it"
        )
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
            "were ingested, fetch the file again for the rest (the source is tagged partial "
            "in the manifest: a complete file of the same name adds the missing rows)"
        )


def read_quarantine(
    data_root: Path, dataset: str, duckdb_config: DuckDBConfig | None = None
) -> pd.DataFrame:
    """Every quarantined row of a dataset (source file and sha256, line number, reason, raw line).

    One row per (source sha256, line): a rerun of the same input records nothing again.
    """
    files = sorted(DataLayout(data_root).quarantine(dataset).glob("*/ingest_date=*/*.parquet"))
    if not files:
        return pd.DataFrame(
            columns=[
                "table_name",
                "source_file",
                "source_sha256",
                "line_number",
                "reason",
                "raw_line",
            ]
        )
    with open_session(duckdb_config or DuckDBConfig()) as con:
        query = load_sql("ingest/read_quarantine")
        return con.execute(query, {"files": [str(f) for f in files]}).df()


def table_counts(sources: list[SourceReport]) -> dict[str, dict[str, int]]:
    """Per table: rows read, added, quarantined, blank lines, duplicates, already in the lake."""
    counts: dict[str, dict[str, int]] = {}
    for report in sources:
        row = counts.setdefault(
            report.table,
            {
                "read": 0,
                "added": 0,
                "quarantined": 0,
                "blank": 0,
                "duplicates": 0,
                "already_in_lake": 0,
            },
        )
        row["read"] += report.rows_seen
        row["blank"] += report.blank_lines
        row["added"] += report.kept
        row["quarantined"] += report.quarantined
        row["duplicates"] += report.duplicates
        row["already_in_lake"] += report.already_in_lake
    return counts


def prune_quarantine(
    quarantine_root: Path, table: str, sha256: str, keep: pa.Array | pa.ChunkedArray
) -> int:
    """Remove the quarantine rows of `table` for the source with content `sha256` whose line
    is not in `keep`; return how many went. Files are rewritten atomically (or deleted)."""
    if isinstance(keep, pa.ChunkedArray):
        keep = keep.combine_chunks()
    keep = keep.cast(pa.int64())
    removed = 0
    for path in sorted((quarantine_root / table).glob("ingest_date=*/*.parquet")):
        if "source_sha256" not in pq.read_schema(path).names:
            continue
        shas = pq.read_table(path, columns=["source_sha256"]).column("source_sha256")
        if not pc.any(pc.equal(shas, sha256)).as_py():
            continue
        rows = pq.read_table(path)
        stale = pc.and_(
            pc.equal(rows.column("source_sha256"), sha256),
            pc.invert(pc.is_in(rows.column("line_number"), value_set=keep)),
        )
        count = int(pc.sum(stale).as_py() or 0)
        if not count:
            continue
        left = rows.filter(pc.invert(stale))
        if left.num_rows:
            tmp = path.with_name(f".{path.name}.tmp")
            pq.write_table(left, tmp)
            tmp.replace(path)
        else:
            path.unlink()
        removed += count
    return removed


def recorded_lines(quarantine_root: Path, table: str, sha256: str) -> pa.Table:
    """Line numbers the quarantine of `table` holds for the source with content `sha256`."""
    parts = [pa.table({"line_number": pa.array([], pa.int64())})]
    for path in sorted((quarantine_root / table).glob("ingest_date=*/*.parquet")):
        if "source_sha256" not in pq.read_schema(path).names:
            continue  # written before the quarantine kept the source's hash
        rows = pq.read_table(
            path, columns=["line_number"], filters=[("source_sha256", "=", sha256)]
        )
        parts.append(rows.cast(parts[0].schema))
    return pa.concat_tables(parts)


def _top_counts(title: str, more_word: str, counts: dict[str, int]) -> list[str]:
    """Summary lines: `title`, then the most frequent entries with their counts (none: [])."""
    if not counts:
        return []
    top = list(counts.items())[:_TOP_REASONS]
    more = f" (+{len(counts) - len(top)} {more_word})" if len(counts) > len(top) else ""
    return [f"    {title}{more}:", *(f"      {n:,}  {entry}" for entry, n in top)]
