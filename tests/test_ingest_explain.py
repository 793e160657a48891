"""Issue 20 on the generic engine (a non-MovieLens spec): an idempotent quarantine, root causes
for dependants, messages that name the problem, one rule for half-applied runs, event-time bounds.

Every test asserts the exact rows in lake and quarantine and the message (file, line, cause); a
failing input is run three times and the quarantine must not change after the first."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import duckdb
import pytest

from flip_core.config import IngestConfig
from flip_core.lake import (
    BadShareError,
    EmptyTableError,
    IngestError,
    IngestResult,
    ingest_dataset,
    load_manifest,
    read_quarantine,
)
from flip_core.layout import DataLayout
from flip_core.spec import DatasetSpec

LENIENT = IngestConfig(max_bad_share=1.0)
T0 = 1_700_000_000  # event times of the good rows (2023-11-14)
ACCOUNTS = [f"{a}|{'gold' if a % 2 else 'silver'}" for a in range(1, 5)]
TAPS = [f"{1 + i % 4}|sku-{i}|{T0 + i}|{i % 2}" for i in range(10)]


def spec(delimiter: str = "|", at_type: str = "int64", **top: Any) -> DatasetSpec:
    """Two tables, no MovieLens name: accounts (key acct) and the events, taps, joined on acct."""
    data: dict[str, Any] = {
        "name": "taps",
        "tables": [
            {
                "name": "accounts",
                "format": "csv",
                "files": ["accounts*.txt"],
                "delimiter": delimiter,
                "header": False,
                "quote": None,
                "columns": [
                    {"name": "acct", "type": "int64", "min": 1},
                    {"name": "tier", "type": "string", "allowed": ["gold", "silver"]},
                ],
                "key": ["acct"],
            },
            {
                "name": "taps",
                "format": "csv",
                "files": ["taps*.txt", "taps*.txt.gz"],
                "delimiter": delimiter,
                "header": False,
                "quote": None,
                "columns": [
                    {"name": "acct", "type": "int64", "min": 1},
                    {"name": "sku", "type": "string"},
                    {"name": "at", "type": at_type},
                    {"name": "hit", "type": "int32", "allowed": [0, 1]},
                ],
                "key": ["acct", "sku", "at"],
            },
        ],
        "events": "taps",
        "joins": [{"table": "accounts", "key": ["acct"]}],
        "timestamp": "at",
        "label": {"column": "hit"},
        "fields": [{"name": "acct", "role": "user"}, {"name": "sku", "role": "item"}],
        "protocols": [{"name": "t", "order": "time", "train": 0.8, "valid": 0.1}],
        **top,
    }
    return DatasetSpec.model_validate(data)


SPEC = spec()


def _lines(lines: list[str], sep: str = "|") -> bytes:
    return "".join(line.replace("|", sep) + "\n" for line in lines).encode()


def _raw(
    tmp_path: Path, taps: bytes | None, accounts: bytes | None = None, name: str = "taps.txt"
) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    for path in raw.iterdir():
        path.unlink()
    if accounts is None:
        accounts = _lines(ACCOUNTS)
    (raw / "accounts.txt").write_bytes(accounts)
    if taps is not None:
        (raw / name).write_bytes(taps)
    return raw


def _ingest(
    tmp_path: Path, raw: Path, config: IngestConfig = LENIENT, dataset: DatasetSpec = SPEC
) -> IngestResult:
    return ingest_dataset(raw, tmp_path / "data", dataset, config)


def _quarantine(tmp_path: Path) -> list[tuple[str, int, str]]:
    q = read_quarantine(tmp_path / "data", SPEC.name)
    return list(zip(q["source_file"], q["line_number"].astype(int), q["reason"], strict=True))


def _lake(tmp_path: Path, table: str = "taps") -> list[tuple[Any, ...]]:
    glob = DataLayout(tmp_path / "data").lake_table_glob(SPEC.name, table)
    if not list((tmp_path / "data" / "lake" / SPEC.name / table).rglob("*.parquet")):
        return []
    with duckdb.connect() as con:
        return con.execute(
            "SELECT * EXCLUDE (ingest_date) FROM read_parquet(?, hive_partitioning = true) "
            "ORDER BY source_file, line_number",
            [glob],
        ).fetchall()


def _fails_three_times(
    tmp_path: Path, raw: Path, error: type[Exception], match: str, config: IngestConfig = LENIENT
) -> list[tuple[str, int, str]]:
    """Run a failing input three times; the quarantine after each run is the first one's."""
    seen = []
    for _ in range(3):
        with pytest.raises(error, match=match):
            _ingest(tmp_path, raw, config)
        seen.append(_quarantine(tmp_path))
    assert seen[1] == seen[0] and seen[2] == seen[0]
    q = read_quarantine(tmp_path / "data", SPEC.name)
    assert not q.duplicated(["source_sha256", "line_number"]).any()
    return seen[0]


# -- 1. the quarantine is idempotent -------------------------------------------------------------


def test_bad_share_failure_rerun_leaves_the_quarantine_unchanged(tmp_path: Path) -> None:
    raw = _raw(tmp_path, _lines([*TAPS, "1|sku-x|1700000100|7"]))
    quarantine = _fails_three_times(
        tmp_path, raw, BadShareError, r"taps: 1 of 11 rows quarantined", IngestConfig()
    )
    assert quarantine == [("taps.txt", 11, "hit: isin([0, 1]) failed (got 7)")]
    assert _lake(tmp_path, "accounts") == [] and _lake(tmp_path) == []


def test_wrong_delimiter_failure_rerun_records_each_line_once(tmp_path: Path) -> None:
    raw = _raw(tmp_path, _lines(TAPS, sep=","))
    quarantine = _fails_three_times(tmp_path, raw, BadShareError, "10 of 10", IngestConfig())
    assert len(quarantine) == 10
    assert quarantine[0] == (
        "taps.txt",
        1,
        "expected 4 fields separated by '|', found 1; the line looks comma-separated, "
        "the spec says '|'",
    )


def test_a_lenient_rerun_after_a_failure_adds_rows_and_no_quarantine_row(tmp_path: Path) -> None:
    raw = _raw(tmp_path, _lines([*TAPS, "1|sku-x|1700000100|7"]))
    with pytest.raises(BadShareError):
        _ingest(tmp_path, raw, IngestConfig())
    result = _ingest(tmp_path, raw)
    assert (result.added("taps"), result.quarantined("taps")) == (10, 1)
    assert (
        "taps.txt: 1 quarantined line(s) were recorded by an earlier run of the same file; "
        "not recorded again"
    ) in result.messages
    assert _quarantine(tmp_path) == [("taps.txt", 11, "hit: isin([0, 1]) failed (got 7)")]
    assert len(_lake(tmp_path)) == 10


# -- 3. messages that name the problem -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sep", "looks"),
    [(",", "comma-separated"), ("\t", "tab-separated"), (";", "semicolon-separated")],
)
def test_a_line_with_another_delimiter_names_it(tmp_path: Path, sep: str, looks: str) -> None:
    bad = "2|sku-x|1700000100|1".replace("|", sep)
    raw = _raw(tmp_path, _lines(TAPS) + (bad + "\n").encode())
    result = _ingest(tmp_path, raw)
    reason = (
        f"expected 4 fields separated by '|', found 1; the line looks {looks}, the spec says '|'"
    )
    assert (result.added("taps"), result.quarantined("taps")) == (10, 1)
    assert _quarantine(tmp_path) == [("taps.txt", 11, reason)]
    assert f"taps.txt: quarantined 1 line(s); first: taps.txt line 11: {reason}" in result.messages


def test_a_utf8_bom_is_stripped_and_reported(tmp_path: Path) -> None:
    raw = _raw(
        tmp_path, b"\xef\xbb\xbf" + _lines(TAPS), accounts=b"\xef\xbb\xbf" + _lines(ACCOUNTS)
    )
    result = _ingest(tmp_path, raw, IngestConfig())
    assert (result.added("accounts"), result.added("taps")) == (4, 10)
    assert _quarantine(tmp_path) == []
    assert _lake(tmp_path)[0][:2] == (1, "sku-0")
    for name in ("accounts.txt", "taps.txt"):
        assert (
            f"{name}: starts with a UTF-8 byte-order mark (BOM); stripped, line 1 read without it"
        ) in result.messages


@pytest.mark.parametrize("fast", [True, False])
def test_integers_beyond_the_column_type_say_out_of_range(tmp_path: Path, fast: bool) -> None:
    lines = [*TAPS, "1|sku-x|99999999999999999999|1", "2|sku-y|1700000100|4294967296"]
    raw = _raw(tmp_path, _lines(lines))
    result = _ingest(tmp_path, raw, IngestConfig(max_bad_share=1.0, fast_path=fast))
    assert (result.added("taps"), result.quarantined("taps")) == (10, 2)
    assert _quarantine(tmp_path) == [
        ("taps.txt", 11, "at: out of range for int64 ('99999999999999999999')"),
        ("taps.txt", 12, "hit: out of range for int32 ('4294967296')"),
    ]


def _odd_source(raw: Path, kind: str) -> str:
    target = raw / "taps.txt"
    if kind == "directory":
        target.mkdir()
        return "taps.txt (taps) is a directory, not a file"
    if kind == "broken":
        target.symlink_to("gone.txt")
        return "taps.txt (taps) is a broken symbolic link (to gone.txt, which does not exist)"
    target.symlink_to("taps-b.txt")
    (raw / "taps-b.txt").symlink_to("taps.txt")
    return "taps.txt (taps) is a symbolic link loop (taps.txt -> taps-b.txt -> ...)"


@pytest.mark.parametrize("kind", ["directory", "broken", "loop"])
def test_a_source_that_is_no_file_is_named(tmp_path: Path, kind: str) -> None:
    raw = _raw(tmp_path, None)
    said = _odd_source(raw, kind)
    for _ in range(2):
        with pytest.raises(IngestError) as err:
            _ingest(tmp_path, raw)
        assert said in str(err.value)
        assert "nothing was added to the lake" in str(err.value)
        assert _lake(tmp_path, "accounts") == [] and _quarantine(tmp_path) == []


def test_whitespace_delimiter_splits_on_runs_of_spaces_and_tabs(tmp_path: Path) -> None:
    dataset = spec(delimiter="whitespace")
    taps = b"1  sku-0\t1700000000 0\n  2\t\tsku-1   1700000001  1  \n3 sku-2 1700000002\n"
    raw = _raw(tmp_path, taps, accounts=b"1 gold\n2\tsilver\n3   gold\n")
    result = _ingest(tmp_path, raw, dataset=dataset)
    assert (result.added("accounts"), result.added("taps")) == (3, 2)
    assert [r[:4] for r in _lake(tmp_path)] == [(1, "sku-0", T0, 0), (2, "sku-1", T0 + 1, 1)]
    assert _quarantine(tmp_path) == [
        ("taps.txt", 3, "expected 4 fields separated by whitespace, found 3")
    ]


def test_rows_a_failed_run_quarantined_leave_the_quarantine_once_they_go_in(
    tmp_path: Path,
) -> None:
    raw = _raw(tmp_path, _lines(TAPS), accounts=_lines(["1|platinum", *ACCOUNTS[1:]]))
    assert len(_fails_three_times(tmp_path, raw, BadShareError, "accounts", IngestConfig())) == 4
    (raw / "accounts.txt").write_bytes(_lines(ACCOUNTS))  # the account row is fixed
    result = _ingest(tmp_path, raw, IngestConfig())
    assert (result.added("accounts"), result.added("taps"), result.quarantined()) == (4, 10, 0)
    # The fixed accounts file is new content: its old row stays on record under the old sha256;
    # the taps file is the same content and its 3 rows went in, so they leave the quarantine.
    assert _quarantine(tmp_path) == [("accounts.txt", 1, TIER)]
    assert (
        "taps.txt: 3 row(s) an earlier failed run quarantined went in this time; removed from "
        "the quarantine"
    ) in result.messages
    for _ in range(2):
        assert _ingest(tmp_path, raw, IngestConfig()).added("taps") == 0
        assert _quarantine(tmp_path) == [("accounts.txt", 1, TIER)]


# -- 2. root causes for dependants ---------------------------------------------------------------

TIER = "tier: isin(['gold', 'silver']) failed (got 'platinum')"


def test_dependants_of_a_quarantined_row_name_its_file_line_and_reason(tmp_path: Path) -> None:
    accounts = _lines(["1|platinum", *ACCOUNTS[1:]])
    raw = _raw(tmp_path, _lines(TAPS), accounts=accounts)
    cause = f"acct 1 was quarantined (accounts.txt line 1: {TIER})"
    expected = [
        ("accounts.txt", 1, TIER),
        *(("taps.txt", line, cause) for line in (1, 5, 9)),
    ]
    # Over the bad-share limit: three runs, one quarantine.
    assert _fails_three_times(tmp_path, raw, BadShareError, "accounts: 1 of 4", IngestConfig())
    assert _quarantine(tmp_path) == expected
    assert _lake(tmp_path, "accounts") == [] and _lake(tmp_path) == []
    # Within the limit: the others go in, the summary names the root cause; the quarantine
    # is as it was (the same rows are refused for the same reasons).
    result = _ingest(tmp_path, raw)
    assert (result.added("accounts"), result.added("taps"), result.quarantined()) == (3, 7, 4)
    assert _quarantine(tmp_path) == expected
    summary = result.summary()
    assert "  taps: +7 rows, 3 quarantined, 7 in the lake" in summary
    assert f"    root causes (rows held by a row of another table):\n      3  {cause}" in summary
    assert "    quarantined by reason:\n      1  tier: isin(['gold', 'silver']) failed\n" in summary


@pytest.mark.parametrize("missing", [False, True])
def test_an_empty_or_missing_joined_file_is_named(tmp_path: Path, missing: bool) -> None:
    raw = _raw(tmp_path, _lines(TAPS), accounts=b"")
    if missing:
        (raw / "accounts.txt").unlink()
        why = "no file of accounts in the raw folder (none matches 'accounts*.txt')"
    else:
        why = "accounts.txt is empty"
    quarantine = _fails_three_times(tmp_path, raw, IngestError, "accounts would have no row")
    assert quarantine == [("taps.txt", n, f"{why}, so accounts has no row") for n in range(1, 11)]
    with pytest.raises(EmptyTableError) as err:
        _ingest(tmp_path, raw)
    assert f"accounts would have no row: {why}" in str(err.value)
    assert "taps would have no row: every row of taps.txt was quarantined" in str(err.value)
    assert _lake(tmp_path, "accounts") == [] and _lake(tmp_path) == []
    assert "      10  " + f"{why}, so accounts has no row" in err.value.summary()


# -- 4. one rule for half-applied runs: all or nothing per dataset run ---------------------------


def test_an_empty_events_file_fails_the_run_and_commits_no_table(tmp_path: Path) -> None:
    raw = _raw(tmp_path, b"")
    assert _fails_three_times(tmp_path, raw, EmptyTableError, "taps would have no row") == []
    with pytest.raises(EmptyTableError) as err:
        _ingest(tmp_path, raw)
    assert str(err.value).startswith(
        f"ingest of {raw} failed: taps would have no row: taps.txt is empty."
    )
    assert "Nothing was added to the lake (a run commits every table or none)" in str(err.value)
    assert "  accounts: 4 valid rows not added, 0 quarantined, 0 in the lake" in err.value.summary()
    assert _lake(tmp_path, "accounts") == []
    assert load_manifest(DataLayout(tmp_path / "data").lake(SPEC.name), SPEC.name).sources == []


def test_an_empty_events_file_on_a_filled_lake_is_a_clean_no_op(tmp_path: Path) -> None:
    _ingest(tmp_path, _raw(tmp_path, _lines(TAPS)), IngestConfig())
    raw = _raw(tmp_path, b"", name="taps-2.txt")
    notes = []
    for _ in range(3):
        result = _ingest(tmp_path, raw, IngestConfig())
        assert (result.added("accounts"), result.added("taps"), result.quarantined()) == (0, 0, 0)
        assert len(_lake(tmp_path)) == 10 and _quarantine(tmp_path) == []
        notes.append([m for m in result.messages if m.startswith("taps-2.txt")])
    assert notes[0] == ["taps-2.txt: empty file, nothing to ingest"]
    assert (
        notes[1]
        == notes[2]
        == ["taps-2.txt: already ingested (same content, sha256 e3b0c44298fc), nothing added"]
    )


def _truncated_gzip(complete: bytes, partial: bytes) -> bytes:
    deflate = zlib.compressobj(wbits=31)
    out = deflate.compress(complete) + deflate.flush(zlib.Z_SYNC_FLUSH)
    return out + deflate.compress(partial) + deflate.flush(zlib.Z_SYNC_FLUSH)


def test_a_truncated_gzip_is_tagged_partial_and_completed_by_the_full_file(tmp_path: Path) -> None:
    whole = _lines(TAPS)
    cut = whole.index(TAPS[7].encode())
    raw = _raw(tmp_path, _truncated_gzip(whole[:cut], b"4|sku-7|17000"), name="taps.txt.gz")
    result = _ingest(tmp_path, raw)
    assert (result.added("taps"), result.quarantined("taps")) == (7, 1)
    assert _quarantine(tmp_path) == [
        ("taps.txt.gz", 8, "incomplete last line: the gzip stream is truncated")
    ]
    root = DataLayout(tmp_path / "data").lake(SPEC.name)
    entry = load_manifest(root, SPEC.name).sources[-1]
    assert (entry.partial, entry.rows, entry.completes) == (True, 7, None)
    assert (
        "    partial: taps.txt.gz (gzip truncated after line 8; 7 rows kept; tagged partial in "
        "the manifest, a complete file of the same name adds the rest)"
    ) in result.summary()
    # The complete file of the same name: only the 3 missing rows go in.
    (raw / "taps.txt.gz").write_bytes(zlib.compress(whole, wbits=31))
    for run in range(3):
        again = _ingest(tmp_path, raw)
        assert again.added("taps") == (3 if run == 0 else 0)
        assert len(_lake(tmp_path)) == 10
        assert [r[-1] for r in _lake(tmp_path)] == list(range(1, 11))
        assert len(_quarantine(tmp_path)) == 1
        if run == 0:
            report = next(s for s in again.sources if s.table == "taps")
            assert (report.kept, report.already_in_lake) == (3, 7)
            assert "    completes: taps.txt.gz completes the partial file of the same name " in (
                again.summary()
            )
    entries = load_manifest(root, SPEC.name).sources
    assert [(e.partial, e.completes) for e in entries if e.table == "taps"] == [
        (True, None),
        (False, entry.sha256),
    ]


# -- 5. event-time bounds -----------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False])
def test_event_times_after_now_plus_tolerance_or_before_the_floor_are_quarantined(
    tmp_path: Path, fast: bool
) -> None:
    max_int64 = 9_223_372_036_854_775_807
    lines = [*TAPS, f"1|sku-x|{max_int64}|1", "2|sku-y|4102444800|1", "3|sku-z|-5|0"]
    raw = _raw(tmp_path, _lines(lines))
    config = IngestConfig(max_bad_share=0.01, fast_path=fast, min_event_time="2000-01-01")
    quarantine = _fails_three_times(tmp_path, raw, BadShareError, "taps: 3 of 13", config)
    assert [q[:2] for q in quarantine] == [("taps.txt", 11), ("taps.txt", 12), ("taps.txt", 13)]
    late = "at: after now + 86,400 s ("
    assert quarantine[0][2].startswith(late)
    assert quarantine[0][2].endswith(
        f"; ingest.future_tolerance_s) (got {max_int64}, beyond any date)"
    )
    assert quarantine[1][2].startswith(late)
    assert quarantine[1][2].endswith("(got 4102444800, 2100-01-01T00:00:00Z)")
    assert quarantine[2][2] == (
        "at: before the floor 2000-01-01T00:00:00Z (ingest.min_event_time) "
        "(got -5, 1969-12-31T23:59:55Z)"
    )
    assert _lake(tmp_path) == []
    # A wider tolerance lets the year-2100 row in; no floor lets -5 in.
    wide = IngestConfig(max_bad_share=1.0, future_tolerance_s=100 * 365 * 86_400)
    result = _ingest(tmp_path, raw, IngestConfig(**{**wide.model_dump(), "min_event_time": None}))
    assert (result.added("taps"), result.quarantined("taps")) == (12, 1)
    # Line 11 was recorded already; lines 12 and 13 went in, so the quarantine lets them go.
    assert _quarantine(tmp_path) == quarantine[:1]
    assert (
        "taps.txt: 2 row(s) an earlier failed run quarantined went in this time; removed "
        "from the quarantine" in result.messages
    )


def test_timestamp_columns_are_bounded_too(tmp_path: Path) -> None:
    dataset = spec(at_type="timestamp")
    lines = ["1|a|2024-01-31 12:00:00|1", "2|b|2150-01-01|0", "3|c|1969-07-20 20:17:40|1"]
    raw = _raw(tmp_path, _lines(lines))
    result = _ingest(tmp_path, raw, dataset=dataset)
    assert (result.added("taps"), result.quarantined("taps")) == (1, 2)
    found = _quarantine(tmp_path)
    assert [q[:2] for q in found] == [("taps.txt", 2), ("taps.txt", 3)]
    assert found[0][2].startswith("at: after now + 86,400 s (")
    assert found[0][2].endswith("(got 2150-01-01T00:00:00Z)")
    assert found[1][2] == (
        "at: before the floor 1970-01-01T00:00:00Z (ingest.min_event_time) "
        "(got 1969-07-20T20:17:40Z)"
    )


def test_floor_and_tolerance_are_checked_when_the_config_loads() -> None:
    with pytest.raises(ValueError, match="min_event_time"):
        IngestConfig(min_event_time="yesterday")
    with pytest.raises(ValueError, match="future_tolerance_s"):
        IngestConfig(future_tolerance_s=-1)


# -- the run summary: CLI and the validation-report artifact -------------------------------------


def test_cli_prints_the_run_summary_of_a_failed_run(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    spec_file = tmp_path / "taps.json"
    spec_file.write_text(SPEC.model_dump_json(exclude_unset=True), encoding="utf-8")
    taps = [*TAPS, "1|sku-x|1700000100|7", "", TAPS[1], "2,sku-y,1700000100,1"]
    raw = _raw(tmp_path, _lines(taps), accounts=_lines(["1|platinum", *ACCOUNTS[1:]]))
    args = ["data", "ingest", "--dataset", str(spec_file), "--raw-dir", str(raw)]
    args += ["--data-root", str(tmp_path / "data")]
    outputs = []
    for _ in range(3):
        run = CliRunner().invoke(app, args)
        assert run.exit_code == 1
        outputs.append(run.output)
        assert len(_quarantine(tmp_path)) == 6
    out = outputs[0]
    assert "failed validation, nothing was added to the lake:" in out
    assert "  accounts: 3 valid rows not added, 1 quarantined, 0 in the lake" in out
    assert "  taps: 7 valid rows not added, 5 quarantined, 0 in the lake" in out
    cause = f"acct 1 was quarantined (accounts.txt line 1: {TIER})"
    assert f"    root causes (rows held by a row of another table):\n      3  {cause}\n" in out
    assert "      1  hit: isin([0, 1]) failed\n" in out
    assert (
        "      1  expected 4 fields separated by '|', found 1; the line looks comma-separated, "
        "the spec says '|'\n"
    ) in out
    assert "    skipped: 1 blank line(s), 1 duplicate line(s) kept once\n" in out
    assert "taps.txt: 5 quarantined line(s) were recorded by an earlier run" in outputs[1]


def test_validation_report_lists_reasons_and_root_causes_per_table() -> None:
    from tasks.artifacts import validation_markdown

    text = validation_markdown(
        "taps",
        {"taps": {"read": 10, "added": 7, "quarantined": 3, "blank": 1}},
        {},
        table_reasons={"taps": {"acct 1 was quarantined (x | y)": 3}, "accounts": {"tier": 1}},
        root_causes={"taps": {"acct 1 was quarantined (x | y)": 3}},
        summary="run summary text",
    )
    assert "| table | added | blank | quarantined | read |" in text
    assert "| taps | 7 | 1 | 3 | 10 |" in text
    assert (
        "### taps\n\n| reason | rows |\n|---|---|\n| acct 1 was quarantined (x \\| y) | 3 |" in text
    )
    assert "### accounts" in text
    assert "## Root causes" in text and "| taps | acct 1 was quarantined (x \\| y) | 3 |" in text
    assert "## Run summary\n\n```\nrun summary text\n```" in text
