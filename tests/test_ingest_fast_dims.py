"""The text fast path (Arrow split of clean files, e.g. users/movies) gives what the exact path
gives."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flip_core.config import IngestConfig
from flip_core.lake import ingest_dataset, read_quarantine
from flip_core.lake.lines import parse_text_lines
from flip_core.layout import DataLayout
from tests.features_support import ml1m_spec

USERS = {
    "user_id": pa.int32(),
    "gender": pa.string(),
    "age": pa.int32(),
    "occupation": pa.int32(),
    "zip": pa.string(),
}
MOVIES = {"movie_id": pa.int32(), "title": pa.string(), "genres": pa.string()}
LENIENT = IngestConfig(max_bad_share=1.0)
SPEC = ml1m_spec()
DATASET = SPEC.name


def _parse(
    data: bytes,
    fields: dict[str, pa.DataType] = USERS,
    max_line: int = 65_536,
    enc: str = "latin-1",
    delimiter: str = "::",
    nulls: tuple[str, ...] = ("",),
) -> pa.Table | None:
    table = parse_text_lines(data, 5, fields, max_line, enc, delimiter, nulls)
    lines = data.count(b"\n") + (not data.endswith(b"\n"))
    assert table is None or table.num_rows == lines  # one row per line, or refused
    return table


def test_parse_text_lines_splits_fields_and_numbers_lines() -> None:
    table = _parse(b"1::F::1::10::48067\n2::M::56::16::70072")
    assert table is not None
    assert table.schema.names == [*USERS, "line_number"]
    assert table.to_pydict() == {
        "user_id": [1, 2],
        "gender": ["F", "M"],
        "age": [1, 56],
        "occupation": [10, 16],
        "zip": ["48067", "70072"],
        "line_number": [5, 6],
    }
    movies = _parse("7::Misérables: Part 2 (1995)::Drama|War\n".encode("latin-1"), MOVIES)
    assert movies is not None
    assert movies.column("title").to_pylist() == ["Misérables: Part 2 (1995)"]


@pytest.mark.parametrize(
    "bad",
    [
        b"1::F::1::10::48067\n\n2::M::56::16::70072\n",  # blank line
        b"\n1::F::1::10::48067\n",  # blank first line
        b"1::F::1::10::48067\r\n",  # CRLF
        b"1::F::1::10::48\t067\n",  # tab
        b"1::F::1::10::48\x00067\n",  # NUL
        b"1::F::1::10::48\x85067\n",  # C1 control in latin-1
        b"1::F::1::10::48\x7f067\n",  # DEL
        b"1:::F::1::10::48067\n",  # three colons
        b"1::F::1::10\n",  # 4 fields
        b"1::F::1::10::48067::x\n",  # 6 fields
        b"1;F;1;10;48067\n",  # wrong delimiter
        b"-1::F::1::10::48067\n",  # sign: the exact path (and pandera) decide
        b"1234567890::F::1::10::48067\n",  # 10 digits
        b"1::F::::10::48067\n",  # empty int field
        b"1:: F::1 ::10::48067\n",  # space in an int field
    ],
)
def test_parse_text_lines_refuses_anything_not_plain(bad: bytes) -> None:
    assert _parse(bad) is None


def test_parse_text_lines_takes_any_delimiter_int64_and_refuses_null_spellings() -> None:
    wide = {"n": pa.int64(), "name": pa.string()}
    table = _parse(b"123456789012345678\ta b\n7\tc\n", wide, delimiter="\t")
    assert table is not None
    assert table.to_pydict() == {
        "n": [123456789012345678, 7],
        "name": ["a b", "c"],
        "line_number": [5, 6],
    }
    assert _parse(b"1234567890123456789\tx\n", wide, delimiter="\t") is None  # 19 digits: exact
    assert _parse(b"1|x\n", wide, delimiter="|") is not None
    assert _parse(b"1|NA\n", wide, delimiter="|", nulls=("", "NA")) is None
    assert _parse(b"1|\n", wide, delimiter="|") is None  # an empty text field is a null


def test_parse_text_lines_limits_and_encodings() -> None:
    line = b"1::F::1::10::48067\n"
    assert _parse(line, max_line=18) is not None and _parse(line, max_line=17) is None
    assert _parse(line, enc="utf-8") is not None  # ASCII reads the same in any encoding
    assert _parse("1::F::1::10::4é\n".encode("latin-1"), enc="utf-8") is None


def _write_raw(folder: Path, users: list[str], movies: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users.dat").write_bytes("".join(users).encode("latin-1"))
    (folder / "movies.dat").write_bytes("".join(movies).encode("latin-1"))
    pairs = [(u, m) for u in (1, 2, 3) for m in (1, 2, 3)]
    ratings = [f"{u}::{m}::{1 + (u + m) % 5}::{978_300_000 + u * 100 + m}\n" for u, m in pairs]
    (folder / "ratings.dat").write_text("".join(ratings))
    return folder


def _clean_users(n: int = 40) -> list[str]:
    return [
        f"{u}::{'MF'[u % 2]}::{(1, 18, 25)[u % 3]}::{u % 21}::{10000 + u}\n" for u in range(1, n)
    ]


def _clean_movies(n: int = 30) -> list[str]:
    titles = ("Heat: Part {} (1995)", "Misérables {} (1998)", "Ran {}, The (1985)")
    return [f"{m}::{titles[m % 3].format(m)}::Drama|Comedy\n" for m in range(1, n)]


def _table(data_root: Path, table: str, order: str) -> list[tuple[Any, ...]]:
    with duckdb.connect() as con:
        return con.execute(
            f"SELECT * FROM read_parquet(?) ORDER BY {order}",
            [DataLayout(data_root).lake_table_glob(DATASET, table)],
        ).fetchall()


def _outcome(
    raw: Path, data_root: Path, config: IngestConfig
) -> tuple[tuple[Any, ...], list[bool]]:
    """(what the ingest did and left, whether each dimension file took the fast path)."""
    result = ingest_dataset(raw, data_root, SPEC, config, ingest_date="2026-01-01")
    reports = [
        (s.table, s.lines, s.kept, s.quarantined, s.duplicates, s.already_in_lake, s.blank_lines)
        for s in result.sources
    ]
    quarantine = read_quarantine(data_root, DATASET).to_dict("records")
    users = _table(data_root, "users", "user_id")
    movies = _table(data_root, "movies", "movie_id")
    fast = [s.fast for s in result.sources if s.table != "ratings"]
    return (reports, result.messages, users, movies, quarantine), fast


def _both_paths(raw: Path, tmp_path: Path) -> tuple[tuple[Any, ...], tuple[Any, ...], list[bool]]:
    """(outcome with the fast path, with the exact path only, fast clean writes per file)."""
    fast, clean = _outcome(raw, tmp_path / "fast", LENIENT)
    exact, none = _outcome(raw, tmp_path / "exact", LENIENT.model_copy(update={"fast_path": False}))
    assert not any(none)
    return fast, exact, clean


def test_clean_dimension_files_take_the_fast_path_and_match_the_exact_path(
    tmp_path: Path,
) -> None:
    raw = _write_raw(tmp_path / "raw", _clean_users(), _clean_movies())
    fast, exact, clean = _both_paths(raw, tmp_path)
    assert clean == [True, True]
    assert fast == exact
    assert len(fast[2]) == 39 and len(fast[3]) == 29 and fast[4] == []
    assert fast[3][0][:3] == (1, "Misérables 1 (1998)", "Drama|Comedy")
    files = sorted((tmp_path / "fast").rglob("users/*/*.parquet"))
    assert pq.read_schema(files[0]).types == [
        pa.int32(),
        pa.string(),
        pa.int32(),
        pa.int32(),
        pa.string(),
        pa.string(),  # source_file
        pa.int64(),  # line_number
    ]


DIRTY = {
    "duplicate": (["3::F::1::3::10003\n"], []),
    "conflict": (["3::M::25::3::10003\n"], []),
    "bad_gender": (["90::X::25::3::10090\n"], []),
    "bad_zip": (["91::M::25::3::#1\n"], []),
    "bad_age": (["92::M::26::3::10092\n"], []),
    "field_count": (["93::M::25::3\n"], ["94::Bad Title (1999)\n"]),
    "blank_crlf": (["\n", "95::M::25::3::10095\r\n"], ["\n"]),
    "bad_genres": ([], ["95::Title (1999)::Drama||Comedy\n"]),
    "duplicate_movie": ([], ["4::Ran 4, The (1985)::Drama|Comedy\n"]),
    "empty_title": ([], ["96::::Drama\n"]),
    "colons": (["97::M::25::3:::10097\n"], ["97::A::: B (1999)::Drama\n"]),
    "nul": (["98::M::25::3::1\x000098\n"], []),
}


@pytest.mark.parametrize("case", sorted(DIRTY))
def test_dirty_dimension_files_give_the_same_rows_reasons_and_messages(
    tmp_path: Path, case: str
) -> None:
    extra_users, extra_movies = DIRTY[case]
    users, movies = _clean_users(), _clean_movies()
    raw = _write_raw(tmp_path / "raw", users[:20] + extra_users + users[20:], movies + extra_movies)
    fast, exact, clean = _both_paths(raw, tmp_path)
    assert fast == exact
    assert fast[1] or fast[4]  # a note or a quarantined row
    assert clean.count(True) == (not extra_users) + (not extra_movies)  # dirty files went exact


def test_dimension_keys_in_the_lake_go_the_exact_way(tmp_path: Path) -> None:
    users = _clean_users()
    raw = _write_raw(tmp_path / "raw", users[:30], _clean_movies())
    data_root = tmp_path / "data"
    ingest_dataset(raw, data_root, SPEC, LENIENT, ingest_date="2026-01-01")
    changed = users[25].replace("::10026", "::99999")
    (raw / "users.dat").write_bytes("".join([*users[20:25], changed, *users[30:]]).encode())
    result = ingest_dataset(raw, data_root, SPEC, LENIENT, ingest_date="2026-01-02")
    report = next(s for s in result.sources if s.table == "users")
    assert (report.kept, report.already_in_lake, report.quarantined, report.fast) == (
        9,
        5,
        1,
        False,
    )
    assert report.problems[0] == (
        "users.dat line 6: key already in the lake with other values (users.dat line 26)"
    )


_TEXT = st.sampled_from(
    ["M", "F", "X", "", "1", "25", "007", "-1", "a:b", "Café", "\t", " 7", "48067"]
)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.lists(_TEXT, min_size=5, max_size=5).map("::".join),
            st.lists(_TEXT, min_size=4, max_size=6).map("::".join),
            st.sampled_from(["", "9::M::25::3::10009\r", "10:::M::25::3::1"]),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_any_users_file_gives_the_same_outcome_on_both_paths(lines: list[str]) -> None:
    # Clean or not, whatever the text parser makes of a file, the lake, quarantine, counts and
    # messages are those of the exact path.
    with tempfile.TemporaryDirectory() as folder:
        tmp_path = Path(folder)
        users = [f"{line}\n" for line in lines]
        raw = _write_raw(tmp_path / "raw", _clean_users()[:3] + users, _clean_movies())
        fast, exact, _ = _both_paths(raw, tmp_path)
        assert fast == exact
