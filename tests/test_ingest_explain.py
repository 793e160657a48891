"""Issue 20 on the generic engine (a non-MovieLens spec): an idempotent quarantine, root causes
for dependants, messages that name the problem, one rule for half-applied runs, event-time bounds.

Every test asserts the exact rows in lake and quarantine and the message (file, line, cause); a
failing input is run three times and the quarantine must not change after the first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from flip_core.config import IngestConfig
from flip_core.lake import (
    BadShareError,
    IngestError,
    IngestResult,
    ingest_dataset,
    lake_table_glob,
    read_quarantine,
)
from flip_core.spec import DatasetSpec

LENIENT = IngestConfig(max_bad_share=1.0)
T0 = 1_700_000_000  # event times of the good rows (2023-11-14)
ACCOUNTS = [f"{a}|{'gold' if a % 2 else 'silver'}" for a in range(1, 5)]
TAPS = [f"{1 + i % 4}|sku-{i}|{T0 + i}|{i % 2}" for i in range(10)]


def spec(delimiter: str = "|", **top: Any) -> DatasetSpec:
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
                    {"name": "at", "type": "int64"},
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


def _raw(tmp_path: Path, taps: bytes | None, accounts: bytes | None = None, **names: str) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    for path in raw.iterdir():
        path.unlink()
    if accounts is None:
        accounts = _lines(ACCOUNTS)
    (raw / names.get("accounts", "accounts.txt")).write_bytes(accounts)
    if taps is not None:
        (raw / names.get("taps", "taps.txt")).write_bytes(taps)
    return raw


def _ingest(
    tmp_path: Path, raw: Path, config: IngestConfig = LENIENT, dataset: DatasetSpec = SPEC
) -> IngestResult:
    return ingest_dataset(raw, tmp_path / "data", dataset, config)


def _quarantine(tmp_path: Path) -> list[tuple[str, int, str]]:
    q = read_quarantine(tmp_path / "data", SPEC.name)
    return list(zip(q["source_file"], q["line_number"].astype(int), q["reason"], strict=True))


def _lake(tmp_path: Path, table: str = "taps") -> list[tuple[Any, ...]]:
    glob = lake_table_glob(tmp_path / "data", SPEC.name, table)
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
