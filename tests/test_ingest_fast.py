"""The integer fast path (Arrow CSV parse of clean files) gives what the exact path gives."""

from __future__ import annotations

import gzip
import tempfile
import threading
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flip_core.config import IngestConfig
from flip_core.lake import (
    IngestError,
    IngestResult,
    RejectedRunError,
    ingest_dataset,
    read_quarantine,
)
from flip_core.lake import ingest as ingest_module
from flip_core.lake.keys import keys_repeat
from flip_core.lake.lines import int_delimiter, parse_int_lines
from flip_core.layout import DataLayout
from flip_core.spec import DatasetSpec, TableSpec
from tests.features_support import ml1m_spec

TYPES = {
    "user_id": pa.int32(),
    "movie_id": pa.int32(),
    "rating": pa.int32(),
    "timestamp": pa.int64(),
}
LENIENT = IngestConfig(max_bad_share=1.0)
EXACT = LENIENT.model_copy(update={"fast_path": False})
SPEC = ml1m_spec()
DATASET = SPEC.name


def _parse(data: bytes, max_line_bytes: int = 65_536, delimiter: str = "::") -> pa.Table | None:
    table = parse_int_lines(data, 11, TYPES, max_line_bytes, delimiter)
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    assert table is None or table.num_rows == lines  # one row per line, or refused
    return table


def test_parse_int_lines_reads_plain_lines_with_consecutive_numbers() -> None:
    table = _parse(b"1::2::3::978300760\n4::5::1::0\n7::8::5::42")
    assert table is not None
    assert table.schema.names == [*TYPES, "line_number"]
    assert [table.schema.field(n).type for n in TYPES] == list(TYPES.values())
    assert table.to_pylist() == [
        {"user_id": 1, "movie_id": 2, "rating": 3, "timestamp": 978300760, "line_number": 11},
        {"user_id": 4, "movie_id": 5, "rating": 1, "timestamp": 0, "line_number": 12},
        {"user_id": 7, "movie_id": 8, "rating": 5, "timestamp": 42, "line_number": 13},
    ]


@pytest.mark.parametrize(
    ("delimiter", "line"),
    [(",", b"1,2,3,4"), ("\t", b"1\t2\t3\t4"), ("|||", b"1|||2|||3|||4"), (" ", b"1 2 3 4")],
)
def test_parse_int_lines_splits_on_any_repeated_punctuation(delimiter: str, line: bytes) -> None:
    assert int_delimiter(delimiter)
    table = _parse(line + b"\n" + line, delimiter=delimiter)
    assert table is not None and table.column("timestamp").to_pylist() == [4, 4]
    assert _parse(line + b"\n", delimiter="::") is None  # another delimiter's lines: refused
    assert _parse(line.replace(b"2", b"-2") + b"\n", delimiter=delimiter) is None


@pytest.mark.parametrize("delimiter", ["ab", "1", "-", "+", ".", ":;", "é"])
def test_int_delimiter_refuses_letters_digits_signs_and_mixed_characters(delimiter: str) -> None:
    assert not int_delimiter(delimiter)


@pytest.mark.parametrize(
    "bad",
    [
        b"1::2::3::4\n\n5::6::7::8\n",  # blank line
        b"\n1::2::3::4\n",  # blank first line
        b"1::2::3::4\n5::6::7::8\n\n",  # blank last line
        b"1::::2::3\n",  # empty field (still 7 ':'-separated parts)
        b"::1::2::3\n",  # empty first field
        b"1::2::3\n",  # 3 fields
        b"1::2::3::4::5\n",  # 5 fields
        b"1:2::3::4:5\n",  # single colons
        b"1::2::3:4:\n",
        b"1::2::3::-4\n",  # minus sign: exact path (pandera gives the reason)
        b"1::2::3::4\r\n",  # CRLF
        b"1,2,3,4\n",
        b"3000000000::2::3::4\n",  # over int32
        b"1::2::3::99999999999999999999\n",  # over int64
        b"1::2\x00::3::4\n",
        b"1::2::3::4 \n",
        b'1::"2"::3::4\n',
    ],
)
def test_parse_int_lines_refuses_anything_not_plain(bad: bytes) -> None:
    assert _parse(bad) is None


def test_parse_int_lines_refuses_lines_over_the_limit_even_if_they_parse() -> None:
    padded = b"1::2::3::" + b"0" * 100 + b"4\n"
    assert _parse(padded, max_line_bytes=100) is None
    table = _parse(padded, max_line_bytes=200)
    assert table is not None and table.column("timestamp").to_pylist() == [4]
    # Short limits are checked line by line, without a run of zeros too.
    assert _parse(b"123456::654321::5::978300760\n", max_line_bytes=64) is not None
    assert _parse(b"123456::654321::5::978300760\n", max_line_bytes=20) is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 40)), min_size=4, max_size=4),
        min_size=1,
        max_size=5,
    ),
    st.integers(64, 260),
)
def test_parse_int_lines_accepts_exactly_the_lines_within_the_limit(
    rows: list[list[tuple[int, int]]], max_line_bytes: int
) -> None:
    # Fields are (value, leading zeros); the zero-run shortcut must never let a long line in,
    # nor refuse a file whose lines are all within the limit.
    lines = [b"::".join(b"0" * zeros + str(value).encode() for value, zeros in r) for r in rows]
    table = _parse(b"\n".join(lines) + b"\n", max_line_bytes=max_line_bytes)
    assert (table is not None) == (max(map(len, lines)) <= max_line_bytes)
    if table is not None:
        assert table.column("user_id").to_pylist() == [r[0][0] for r in rows]


@pytest.mark.parametrize("max_line_bytes", [64, 100, 131, 200, 1000])
def test_parse_int_lines_zero_run_shortcut_is_tight(max_line_bytes: int) -> None:
    # Every field at its type's most digits, padded with ever more zeros: refused exactly when
    # the line passes the limit (a run of zeros just short of the searched one must not slip by).
    widest = [2**31 - 1, 2**31 - 1, 2**31 - 1, 2**63 - 1]
    for zeros in range(max_line_bytes // 4 + 2):
        line = b"::".join(b"0" * zeros + str(value).encode() for value in widest)
        table = _parse(line + b"\n", max_line_bytes=max_line_bytes)
        assert (table is not None) == (len(line) <= max_line_bytes), (zeros, len(line))


def _raw(folder: Path, ratings: list[str], users: int = 50, movies: int = 80) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users.dat").write_text(
        "".join(f"{u}::{'MF'[u % 2]}::25::{u % 21}::{10000 + u}\n" for u in range(1, users + 1)),
        encoding="latin-1",
    )
    (folder / "movies.dat").write_text(
        "".join(f"{m}::Movie {m} (1999)::Drama|Comedy\n" for m in range(1, movies + 1)),
        encoding="latin-1",
    )
    (folder / "ratings.dat").write_text("".join(f"{r}\n" for r in ratings), encoding="latin-1")
    return folder


def _ratings(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    users, movies, stars = rng.integers(1, 51, n), rng.integers(1, 81, n), rng.integers(1, 6, n)
    rows = zip(users, movies, stars, strict=True)
    return [f"{u}::{m}::{r}::{978_300_000 + i}" for i, (u, m, r) in enumerate(rows)]


def _lake(data_root: Path) -> list[tuple]:
    """The lake's ratings (none when no file holds any)."""
    if not list((data_root / "lake" / DATASET / "ratings").glob("*/*.parquet")):
        return []
    with duckdb.connect() as con:
        return con.execute(
            "SELECT user_id, movie_id, rating, timestamp, source_file, line_number "
            "FROM read_parquet(?) ORDER BY line_number",
            [DataLayout(data_root).lake_table_glob(DATASET, "ratings")],
        ).fetchall()


def _ratings_paths(result: IngestResult) -> tuple[list[int], list[bool]]:
    """(batches the fast parser typed, written by the fast path) of each ingested ratings file."""
    done = [s for s in result.sources if s.table == "ratings" and s.status == "ingested"]
    return [s.fast_batches for s in done], [s.fast for s in done]


def _outcome(raw: Path, data_root: Path, config: IngestConfig) -> tuple[tuple, IngestResult]:
    try:
        result = ingest_dataset(raw, data_root, SPEC, config, ingest_date="2026-01-01")
    except RejectedRunError as exc:  # e.g. no valid rating: the run commits nothing
        failed = str(exc).replace(str(data_root), "<data_root>")
        result = IngestResult(
            dataset=DATASET,
            lake_dir=data_root,
            quarantine_dir=data_root,
            ingest_date="2026-01-01",
            run_id=exc.run_id,
            sources=exc.sources,
            table_rows=exc.table_rows,
        )
        result.sources[0].messages.insert(0, failed)
    reports = [
        (s.table, s.lines, s.kept, s.quarantined, s.duplicates, s.already_in_lake, s.blank_lines)
        for s in result.sources
    ]
    quarantine = read_quarantine(data_root, DATASET).to_dict("records")
    return (reports, result.messages, _lake(data_root), quarantine), result


def _both_paths(
    raw: Path, tmp_path: Path, config: IngestConfig = LENIENT
) -> tuple[tuple, tuple, tuple[list[int], list[bool]]]:
    """(outcome with the fast path, outcome with the exact path only, what the fast path did)."""
    fast, result = _outcome(raw, tmp_path / "fast", config)
    exact, exact_result = _outcome(
        raw, tmp_path / "exact", config.model_copy(update={"fast_path": False})
    )
    assert _ratings_paths(exact_result) == ([0], [False])
    return fast, exact, _ratings_paths(result)


def test_clean_file_takes_the_fast_path_and_matches_the_exact_path(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw", _ratings(3000))
    fast, exact, paths = _both_paths(raw, tmp_path)
    assert paths == ([1], [True])
    assert fast == exact
    lake = fast[2]
    assert len(lake) == 3000 and [r[5] for r in lake] == list(range(1, 3001))
    # The lake file (Parquet v2 pages) reads back with pandas/pyarrow too, same types.
    files = sorted((tmp_path / "fast").rglob("ratings/*/*.parquet"))
    frame = pd.read_parquet(files[0])
    assert frame.dtypes.astype(str).tolist()[:4] == ["int32", "int32", "int32", "int64"]
    assert frame["line_number"].sort_values().tolist() == list(range(1, 3001))
    # source_file is written from a one-value ENUM on both paths; readers see plain strings
    for path in ("fast", "exact"):
        (file,) = sorted((tmp_path / path).rglob("ratings/*/*.parquet"))
        table = pq.read_table(file)
        assert table.schema.field("source_file").type == pa.string()
        assert set(table.column("source_file").to_pylist()) == {"ratings.dat"}


def test_one_bad_line_in_a_later_chunk_keeps_exact_line_numbers(tmp_path: Path) -> None:
    lines = _ratings(70_000)  # about 1.6 MiB: two 1-MiB chunks
    lines[60_000] = "7::8::9::1"  # rating out of range, in the second chunk
    lines[65_000] = "7::8"  # wrong field count
    lines.insert(55_000, "")  # a blank line shifts the numbers after it
    raw = _raw(tmp_path / "raw", lines)
    config = IngestConfig(max_bad_share=1.0, chunk_mib=1)
    fast, exact, paths = _both_paths(raw, tmp_path, config)
    assert paths == ([1], [False])  # one chunk parsed fast, one exact: the file went exact
    assert fast == exact
    quarantine = [(q["line_number"], q["reason"]) for q in fast[3]]
    assert quarantine == [
        (60_002, "rating: in_range(1, 5) failed (got 9)"),
        (65_002, "expected 4 fields separated by '::', found 2"),
    ]
    numbers = [r[5] for r in fast[2]]
    assert len(numbers) == 69_998 and 55_001 not in numbers and numbers[-1] == 70_001


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("duplicate", None),
        ("conflict", "duplicate key of line 11 with other values"),
        ("unknown_user", "user_id 999 is not a row of users"),
        ("unknown_movie", "movie_id 81 is not a row of movies"),
        ("bad_rating", "rating: in_range(1, 5) failed (got 0)"),
    ],
)
def test_clean_parse_with_bad_values_falls_back_to_the_exact_path(
    tmp_path: Path, change: str, reason: str | None
) -> None:
    lines = _ratings(500)
    if change == "duplicate":
        lines.append(lines[10])
    elif change == "conflict":
        u, m, r, t = lines[10].split("::")
        lines.append(f"{u}::{m}::{int(r) % 5 + 1}::{t}")
    elif change == "unknown_user":
        lines.append("999::1::3::1")
    elif change == "unknown_movie":
        lines.append("1::81::3::1")
    else:
        lines.append("1::1::0::1")
    raw = _raw(tmp_path / "raw", lines)
    fast, exact, paths = _both_paths(raw, tmp_path)
    assert paths == ([1], [False])
    assert fast == exact
    assert sum(r[2] for r in fast[0] if r[0] == "ratings") == 500
    assert [(q["line_number"], q["reason"]) for q in fast[3]] == ([(501, reason)] if reason else [])


def test_rows_already_in_the_lake_fall_back_and_new_files_stay_fast(tmp_path: Path) -> None:
    lines = _ratings(400)
    raw = _raw(tmp_path / "raw", lines[:300])
    data_root = tmp_path / "data"
    first = ingest_dataset(raw, data_root, SPEC, LENIENT, ingest_date="2026-01-01")
    (raw / "ratings-2.dat").write_text("\n".join(lines[300:]) + "\n", encoding="latin-1")
    (raw / "ratings-3.dat").write_text("\n".join(lines[250:350]) + "\n", encoding="latin-1")
    result = ingest_dataset(raw, data_root, SPEC, LENIENT, ingest_date="2026-01-02")
    assert _ratings_paths(first)[1] + _ratings_paths(result)[1] == [True, True, False]
    day2 = {s.path.name: (s.kept, s.already_in_lake) for s in result.sources}
    assert day2["ratings-2.dat"] == (100, 0)
    assert day2["ratings-3.dat"] == (0, 100)
    assert [r[5] for r in _lake(data_root) if r[4] == "ratings-2.dat"] == list(range(1, 101))


def test_same_ratings_twice_in_one_run_is_read_once(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw", _ratings(200))
    (raw / "ratings-copy.dat").write_bytes((raw / "ratings.dat").read_bytes())
    result = ingest_dataset(raw, tmp_path / "data", SPEC, LENIENT)
    assert [(s.path.name, s.status) for s in result.sources if s.table == "ratings"] == [
        ("ratings-copy.dat", "ingested"),
        ("ratings.dat", "skipped"),
    ]
    assert _ratings_paths(result) == ([1], [True])
    assert not [t for t in threading.enumerate() if t.name == "ingest-prefetch"]


def _spec_reading(**files: list[str]) -> DatasetSpec:
    """The ml-1m spec with other file globs for some tables."""
    tables = [
        t.model_copy(update={"files": files[t.name]}) if t.name in files else t for t in SPEC.tables
    ]
    return SPEC.model_copy(update={"tables": tables})


def test_failed_run_stops_the_background_reader(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw", _ratings(400_000))  # several chunks still to read
    (raw / "users.dat").write_bytes(b"")
    (raw / "users.dat.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    config = IngestConfig(max_bad_share=1.0, chunk_mib=1)
    spec = _spec_reading(users=["users*.dat*"])
    with pytest.raises(IngestError, match=r"users.dat.gz: corrupt gzip data"):
        ingest_dataset(raw, tmp_path / "data", spec, config)
    assert not [t for t in threading.enumerate() if t.name == "ingest-prefetch"]


def test_corrupt_ratings_gzip_read_in_the_background_fails_clearly(tmp_path: Path) -> None:
    raw = _raw(tmp_path / "raw", [])
    good = gzip.compress("".join(f"{r}\n" for r in _ratings(50)).encode())
    (raw / "ratings.dat").unlink()
    corrupt = good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:]
    (raw / "ratings.dat.gz").write_bytes(corrupt)
    with pytest.raises(IngestError, match=r"ratings.dat.gz: corrupt gzip data .*nothing was added"):
        ingest_dataset(raw, tmp_path / "data", SPEC, LENIENT)


def test_other_shapes_take_the_fast_path_too(tmp_path: Path) -> None:
    # The fast path follows the table's shape, not its name: the same ratings as a tab-separated
    # file, read through a spec that says so, are typed in one go and give the exact path's lake.
    lines = [line.replace("::", "\t") for line in _ratings(300)]
    raw = _raw(tmp_path / "raw", [])
    (raw / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    spec = SPEC.model_copy(
        update={
            "tables": [
                t.model_copy(update={"delimiter": "\t"}) if t.name == "ratings" else t
                for t in SPEC.tables
            ]
        }
    )
    outcomes = []
    for config in (LENIENT, EXACT):
        result = ingest_dataset(raw, tmp_path / str(config.fast_path), spec, config)
        outcomes.append([s.fast for s in result.sources])
    assert outcomes == [[True, True, True], [False, False, False]]
    assert ingest_module.fast_parser(spec.table("ratings"), 65_536) is not None


@pytest.mark.parametrize(
    ("change", "fast"),
    [
        ({}, True),
        ({"header": True}, False),
        ({"quote": '"', "delimiter": ","}, False),
        ({"format": "parquet"}, False),
        ({"null_values": ["", "0"]}, False),
        ({"delimiter": "€"}, False),
    ],
)
def test_fast_parser_follows_the_table_shape(change: dict[str, Any], fast: bool) -> None:
    table: TableSpec = SPEC.table("ratings").model_copy(update=change)
    assert (ingest_module.fast_parser(table, 65_536) is not None) is fast


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**31), 2**31 - 1),
            st.integers(0, 6),
            st.integers(-(2**62), 2**62),
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from(["full", "narrow", "prefix"]),
)
def test_key_repeat_check_agrees_with_a_set_of_tuples(
    keys: list[tuple[int, int, int]], shape: str
) -> None:
    # "narrow": small ranges (int32 packing); "prefix": the first two columns unique on their
    # own or not, the third wide (the prefix shortcut); "full": any int32/int64 values.
    if shape == "narrow":
        keys = [(a % 50, b, c % 7) for a, b, c in keys]
    elif shape == "prefix":
        keys = [(a % 1000, b, c) for a, b, c in keys]
    columns: list[np.ndarray] = [
        np.array([k[0] for k in keys], dtype=np.int32),
        np.array([k[1] for k in keys], dtype=np.int32),
        np.array([k[2] for k in keys], dtype=np.int64),
    ]
    expected = len(set(keys)) < len(keys)
    result = keys_repeat(columns)
    spans = [int(c.max()) - int(c.min()) + 1 for c in columns]
    if spans[0] * spans[1] * spans[2] >= 2**63:
        assert result is None
    else:
        assert result is expected


def test_key_repeat_check_finds_a_repeat_hidden_behind_a_unique_looking_prefix() -> None:
    # (user, movie) has 4 possible values for 3 rows, so it is checked first; it repeats, and
    # the timestamps decide
    users = np.array([1, 2, 1], dtype=np.int32)
    movies = np.array([5, 6, 5], dtype=np.int32)
    assert keys_repeat([users, movies, np.array([9, 9, 10])]) is False
    assert keys_repeat([users, movies, np.array([9, 9, 9])]) is True
    # a column spanning all of int32 packs into int64 without overflow
    wide = np.array([-(2**31), 2**31 - 1, -(2**31)], dtype=np.int32)
    assert keys_repeat([wide]) is True
    assert keys_repeat([wide[:2]]) is False


def test_a_clean_file_that_fails_to_write_fails_the_ingest_and_adds_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Clean files are written in the background while the next files are read: a write that
    # fails after its checks passed must still fail the run, with the lake left as it was.
    raw = _raw(tmp_path / "raw", _ratings(300))
    copy_clean = ingest_module._Run._copy_clean

    def failing_copy(run: ingest_module._Run, table: TableSpec, *args: Any) -> None:
        if table.name == "users":
            raise OSError("No space left on device")
        copy_clean(run, table, *args)

    monkeypatch.setattr(ingest_module._Run, "_copy_clean", failing_copy)
    data_root = tmp_path / "data"
    with pytest.raises(OSError, match="No space left"):
        ingest_dataset(raw, data_root, SPEC, LENIENT)
    lake = data_root / "lake" / DATASET
    assert sorted(p.name for p in lake.iterdir()) == [".ingest.lock"]  # no table, no manifest
    monkeypatch.undo()
    result = ingest_dataset(raw, data_root, SPEC, LENIENT)  # the files are not marked as ingested
    assert (result.added("users"), result.added("movies"), result.added("ratings")) == (50, 80, 300)


_FIELD = st.one_of(
    st.integers(0, 120).map(str),
    st.sampled_from(["007", "-3", "+4", "", " 5", "x", "1.5", "99999999999", "2147483648"]),
)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.lists(_FIELD, min_size=4, max_size=4).map("::".join),
            st.lists(_FIELD, min_size=3, max_size=5).map("::".join),
            st.sampled_from(["", "1:::2::3::4", "1::2::3::4\r", "1\t2\t3\t4"]),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_any_ratings_file_gives_the_same_outcome_on_both_paths(lines: list[str]) -> None:
    # Clean or not, whatever the fast parser makes of a file, the lake, quarantine, counts and
    # messages are those of the exact path.
    with tempfile.TemporaryDirectory() as folder:
        tmp_path = Path(folder)
        raw = _raw(tmp_path / "raw", lines, users=120, movies=120)
        fast, exact, _ = _both_paths(raw, tmp_path)
        assert fast == exact
