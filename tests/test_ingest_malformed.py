"""One test per malformed-input case (ml-1m spec): exact rows kept / quarantined and the message."""

from __future__ import annotations

import zlib
from pathlib import Path

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
from tests.features_support import ml1m_spec

SPEC = ml1m_spec()
DATASET = SPEC.name

GOOD = 20  # good rating lines in every test file
LENIENT = IngestConfig(max_bad_share=1.0)


def _good_lines() -> list[str]:
    return [f"{1 + i % 5}::{1 + i}::{1 + i % 5}::{978300000 + i}" for i in range(GOOD)]


def _raw(tmp_path: Path, ratings: bytes, name: str = "ratings.dat") -> Path:
    raw = tmp_path / "raw"
    raw.mkdir(exist_ok=True)
    users = "".join(f"{u}::{'MF'[u % 2]}::25::{u}::{10000 + u}\n" for u in range(1, 6))
    movies = "".join(f"{m}::Movie {m} (1999)::Drama|Comedy\n" for m in range(1, GOOD + 1))
    (raw / "users.dat").write_text(users, encoding="latin-1")
    (raw / "movies.dat").write_text(movies, encoding="latin-1")
    (raw / name).write_bytes(ratings)
    return raw


def _ingest(
    tmp_path: Path, ratings: bytes, config: IngestConfig = LENIENT, name: str = "ratings.dat"
) -> IngestResult:
    return ingest_dataset(_raw(tmp_path, ratings, name), tmp_path / "data", SPEC, config)


def _lines_bytes(lines: list[str], end: str = "\n") -> bytes:
    return "".join(line + end for line in lines).encode("latin-1")


def _quarantine(tmp_path: Path) -> list[tuple[str, int, str]]:
    q = read_quarantine(tmp_path / "data", DATASET)
    return list(zip(q["source_file"], q["line_number"].astype(int), q["reason"], strict=True))


def _lake_ratings(tmp_path: Path) -> list[tuple]:
    glob = DataLayout(tmp_path / "data").lake_table_glob(DATASET, "ratings")
    with duckdb.connect() as con:
        return con.execute(
            "SELECT user_id, movie_id, rating, timestamp, source_file, line_number "
            "FROM read_parquet(?, hive_partitioning = true) ORDER BY line_number",
            [glob],
        ).fetchall()


def _with_bad(bad: str, at: int = 7) -> list[str]:
    lines = _good_lines()
    lines.insert(at - 1, bad)
    return lines


def _assert_one_bad(tmp_path: Path, result: IngestResult, line: int, reason: str) -> None:
    assert result.added("ratings") == GOOD
    assert result.quarantined("ratings") == 1
    assert _quarantine(tmp_path) == [("ratings.dat", line, reason)]
    assert f"ratings.dat: quarantined 1 line(s); first: ratings.dat line {line}: {reason}" in (
        result.messages
    )
    # Good rows after the bad line keep their own physical line numbers.
    assert [r[5] for r in _lake_ratings(tmp_path)] == [n for n in range(1, GOOD + 2) if n != line]


def test_wrong_delimiter_line_is_quarantined(tmp_path: Path) -> None:
    result = _ingest(tmp_path, _lines_bytes(_with_bad("3\t4\t5\t978300760")))
    _assert_one_bad(
        tmp_path,
        result,
        7,
        "expected 4 fields separated by '::', found 1; the line looks tab-separated, "
        "the spec says '::'",
    )


def test_wrong_delimiter_file_fails_and_leaves_lake_without_ratings(tmp_path: Path) -> None:
    lines = [line.replace("::", ",") for line in _good_lines()]
    with pytest.raises(BadShareError) as err:
        _ingest(tmp_path, _lines_bytes(lines), IngestConfig())
    message = str(err.value)
    assert "ratings: 20 of 20 rows quarantined (100.00%) > limit 1.00%" in message
    assert (
        "ratings.dat line 1: expected 4 fields separated by '::', found 1; the line looks "
        "comma-separated, the spec says '::'" in (message)
    )
    assert "Nothing was added to the lake" in message
    assert len(_quarantine(tmp_path)) == 20
    root = DataLayout(tmp_path / "data").lake(DATASET)
    assert not list(root.rglob("*.parquet"))
    assert load_manifest(root, DATASET).sources == []


@pytest.mark.parametrize(
    ("bad", "found"), [("1::2::3", 3), ("1::2::3::978300760::9", 5), ("1::::2::3::4", 5)]
)
def test_wrong_column_count(tmp_path: Path, bad: str, found: int) -> None:
    result = _ingest(tmp_path, _lines_bytes(_with_bad(bad)))
    _assert_one_bad(tmp_path, result, 7, f"expected 4 fields separated by '::', found {found}")


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("abc::2::3::978300760", "user_id: not an integer ('abc')"),
        ("1::2.5::3::978300760", "movie_id: not an integer ('2.5')"),
        ("1::2::3::97830e760", "timestamp: not an integer ('97830e760')"),
        (
            "1::2::3::99999999999999999999",
            "timestamp: out of range for int64 ('99999999999999999999')",
        ),
        ("x::y::3::978300760", "user_id: not an integer ('x'); movie_id: not an integer ('y')"),
    ],
)
def test_non_numeric_fields(tmp_path: Path, bad: str, reason: str) -> None:
    result = _ingest(tmp_path, _lines_bytes(_with_bad(bad)))
    _assert_one_bad(tmp_path, result, 7, reason)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("1::2::6::978300760", "rating: in_range(1, 5) failed (got 6)"),
        ("1::2::0::978300760", "rating: in_range(1, 5) failed (got 0)"),
        ("1::2::3::-5", "timestamp: greater_than_or_equal_to(0) failed (got -5)"),
        ("99::2::3::978300760", "user_id 99 is not a row of users"),
        ("1::999::3::978300760", "movie_id 999 is not a row of movies"),
        (
            "99::999::3::978300760",
            "user_id 99 is not a row of users; movie_id 999 is not a row of movies",
        ),
    ],
)
def test_out_of_range_values(tmp_path: Path, bad: str, reason: str) -> None:
    result = _ingest(tmp_path, _lines_bytes(_with_bad(bad)))
    _assert_one_bad(tmp_path, result, 7, reason)


def test_out_of_range_users(tmp_path: Path) -> None:
    raw = _raw(tmp_path, _lines_bytes(_good_lines()))
    with (raw / "users.dat").open("a", encoding="latin-1") as handle:
        handle.write("6::X::25::1::12345\n7::M::30::1::12345\n8::F::25::21::12345\n")
    result = ingest_dataset(raw, tmp_path / "data", SPEC, LENIENT)
    assert result.added("users") == 5
    assert _quarantine(tmp_path) == [
        ("users.dat", 6, "gender: isin(['M', 'F']) failed (got 'X')"),
        ("users.dat", 7, "age: isin([1, 18, 25, 35, 45, 50, 56]) failed (got 30)"),
        ("users.dat", 8, "occupation: in_range(0, 20) failed (got 21)"),
    ]


def test_invalid_bytes(tmp_path: Path) -> None:
    data = _lines_bytes(_good_lines())
    bad = b"1::2::\x01::978300760\n"
    result = _ingest(tmp_path, data + bad)
    _assert_one_bad(tmp_path, result, 21, "invalid bytes: control byte 0x01 at column 7")


def test_c1_control_bytes_in_latin1_title(tmp_path: Path) -> None:
    raw = _raw(tmp_path, _lines_bytes(_good_lines()))
    with (raw / "movies.dat").open("ab") as handle:
        handle.write("21::Caf\xe9 Society (2016)::Drama\n".encode("latin-1"))
        handle.write(b"22::Bad \x85 Title (2016)::Drama\n")
    result = ingest_dataset(raw, tmp_path / "data", SPEC, LENIENT)
    assert result.added("movies") == GOOD + 1
    assert _quarantine(tmp_path) == [
        ("movies.dat", 22, "invalid bytes: control character U+0085 at column 9")
    ]
    with duckdb.connect() as con:
        title = con.execute(
            "SELECT title FROM read_parquet(?) WHERE movie_id = 21",
            [DataLayout(tmp_path / "data").lake_table_glob(DATASET, "movies")],
        ).fetchone()
    assert title == ("Café Society (2016)",)


def test_nul_bytes(tmp_path: Path) -> None:
    result = _ingest(tmp_path, _lines_bytes(_with_bad("1::2\x00::3::978300760", at=4)))
    _assert_one_bad(tmp_path, result, 4, "invalid bytes: NUL byte at column 5")
    raw_line = read_quarantine(tmp_path / "data", DATASET)["raw_line"].iloc[0]
    assert raw_line == "1::2\\x00::3::978300760"


def test_very_long_line(tmp_path: Path) -> None:
    result = _ingest(tmp_path, _lines_bytes(_with_bad("1::2::3::" + "9" * 100_000, at=3)))
    _assert_one_bad(tmp_path, result, 3, "line is 100,009 bytes, over the 65,536-byte limit")
    raw_line = read_quarantine(tmp_path / "data", DATASET)["raw_line"].iloc[0]
    assert len(raw_line) == 203 and raw_line.endswith("...")


def test_line_longer_than_a_read_chunk_is_not_held_in_memory(tmp_path: Path) -> None:
    long_line = "1::2::3::" + "7" * 3_000_000
    config = IngestConfig(max_bad_share=1.0, chunk_mib=1)
    result = _ingest(tmp_path, _lines_bytes(_with_bad(long_line, at=5)), config)
    _assert_one_bad(tmp_path, result, 5, "line is 3,000,009 bytes, over the 65,536-byte limit")


def test_blank_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    lines = _good_lines()
    lines[4:4] = [""]
    lines[9:9] = [""]
    result = _ingest(tmp_path, _lines_bytes(lines) + b"\n")
    assert result.added("ratings") == GOOD
    assert result.quarantined() == 0
    assert "ratings.dat: skipped 3 blank line(s) (line 5, 10, 23)" in result.messages
    numbers = [r[5] for r in _lake_ratings(tmp_path)]
    assert numbers == [n for n in range(1, 23) if n not in (5, 10)]


def test_crlf_line_endings(tmp_path: Path) -> None:
    result = _ingest(tmp_path, _lines_bytes(_good_lines(), end="\r\n"))
    assert result.added("ratings") == GOOD
    assert result.quarantined() == 0
    assert "ratings.dat: 20 line(s) end in CRLF; read as plain line ends" in result.messages
    raw = tmp_path / "raw"
    assert result.added("users") == 5 and (raw / "users.dat").is_file()
    first = _lake_ratings(tmp_path)[0]
    assert first[:4] == (1, 1, 1, 978300000)


def test_bare_carriage_return_is_a_control_byte(tmp_path: Path) -> None:
    result = _ingest(tmp_path, _lines_bytes(_with_bad("1::2::3\r::978300760", at=2)))
    _assert_one_bad(tmp_path, result, 2, "invalid bytes: control byte 0x0d at column 8")


def _truncated_gzip(complete: list[str], partial: str) -> bytes:
    """A gzip stream holding `complete` lines plus `partial`, cut before its end marker."""
    deflate = zlib.compressobj(wbits=31)
    out = deflate.compress(_lines_bytes(complete)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    return out + deflate.compress(partial.encode()) + deflate.flush(zlib.Z_SYNC_FLUSH)


def test_truncated_gzip_keeps_complete_lines(tmp_path: Path) -> None:
    data = _truncated_gzip(_good_lines()[:15], "16::3::4::9783")
    result = _ingest(tmp_path, data, name="ratings.dat.gz")
    assert result.added("ratings") == 15
    assert result.quarantined("ratings") == 1
    assert _quarantine(tmp_path) == [
        ("ratings.dat.gz", 16, "incomplete last line: the gzip stream is truncated")
    ]
    assert (
        "ratings.dat.gz: gzip stream is truncated after line 16; the complete lines were "
        "ingested, fetch the file again for the rest (the source is tagged partial in the "
        "manifest: a complete file of the same name adds the missing rows)"
    ) in result.messages


def test_corrupt_gzip_fails_clearly_and_adds_nothing(tmp_path: Path) -> None:
    good = zlib.compress(_lines_bytes(_good_lines()), wbits=31)
    corrupt = good[:20] + bytes(b ^ 0xFF for b in good[20:40]) + good[40:]
    with pytest.raises(IngestError, match=r"ratings.dat.gz: corrupt gzip data .*nothing was added"):
        _ingest(tmp_path, corrupt, name="ratings.dat.gz")
    root = DataLayout(tmp_path / "data").lake(DATASET)
    assert not list(root.rglob("*.parquet"))
    assert not [p for p in root.iterdir() if p.name.startswith(".staging")]


def test_empty_ratings_file(tmp_path: Path) -> None:
    # All or nothing per run: ratings would be empty, so users and movies are not added either.
    for _ in range(2):
        with pytest.raises(
            EmptyTableError, match=r"ratings would have no row: ratings\.dat is empty"
        ):
            _ingest(tmp_path, b"")
        assert not list(DataLayout(tmp_path / "data").lake(DATASET).rglob("*.parquet"))
        assert _quarantine(tmp_path) == []


def test_duplicates_inside_a_file_are_kept_once(tmp_path: Path) -> None:
    lines = _good_lines()
    lines += [lines[2], lines[2], lines[5].replace("::1::978", "::5::978")]
    result = _ingest(tmp_path, _lines_bytes(lines))
    assert result.added("ratings") == GOOD
    report = next(s for s in result.sources if s.table == "ratings")
    assert report.duplicates == 2
    assert "ratings.dat: 2 duplicate line(s) inside the file, kept once" in result.messages
    assert _quarantine(tmp_path) == [
        ("ratings.dat", 23, "duplicate key of line 6 with other values")
    ]


def test_bad_share_within_limit_goes_on(tmp_path: Path) -> None:
    lines = _good_lines() * 1  # 20 good + 1 bad = 4.8 % bad
    result = _ingest(
        tmp_path, _lines_bytes([*lines, "1::2::9::978300760"]), IngestConfig(max_bad_share=0.05)
    )
    assert result.added("ratings") == GOOD
    assert result.quarantined("ratings") == 1


def test_bad_share_over_limit_fails_with_summary(tmp_path: Path) -> None:
    with pytest.raises(BadShareError) as err:
        _ingest(tmp_path, _lines_bytes(_with_bad("1::2::9::978300760")), IngestConfig())
    assert str(err.value).startswith(f"ingest of {tmp_path / 'raw'} failed: ratings: 1 of 21 rows")
    assert "(4.76%) > limit 1.00%" in str(err.value)
    assert "ratings.dat line 7: rating: in_range(1, 5) failed (got 9)" in str(err.value)
    assert _quarantine(tmp_path) == [("ratings.dat", 7, "rating: in_range(1, 5) failed (got 9)")]
    assert not list(DataLayout(tmp_path / "data").lake(DATASET).rglob("*.parquet"))


def test_ratings_of_a_quarantined_user_name_the_root_cause(tmp_path: Path) -> None:
    raw = _raw(tmp_path, _lines_bytes(_good_lines()))
    users = (raw / "users.dat").read_text(encoding="latin-1").splitlines()
    users[0] = "1::X::25::1::10001"  # user 1 fails its gender check
    (raw / "users.dat").write_text("\n".join(users) + "\n", encoding="latin-1")
    result = ingest_dataset(raw, tmp_path / "data", SPEC, LENIENT)
    assert (result.added("users"), result.added("ratings")) == (4, GOOD - 4)
    gender = "gender: isin(['M', 'F']) failed (got 'X')"
    cause = f"user_id 1 was quarantined (users.dat line 1: {gender})"
    assert _quarantine(tmp_path) == [
        *(("ratings.dat", line, cause) for line in (1, 6, 11, 16)),
        ("users.dat", 1, gender),
    ]


@pytest.mark.parametrize("users", [b"", None])
def test_ratings_without_any_user_say_users_is_empty(tmp_path: Path, users: bytes | None) -> None:
    raw = _raw(tmp_path, _lines_bytes(_good_lines()))
    if users is None:
        (raw / "users.dat").unlink()
    else:
        (raw / "users.dat").write_bytes(users)
    with pytest.raises(EmptyTableError) as err:
        ingest_dataset(raw, tmp_path / "data", SPEC, LENIENT)
    if users is None:
        why = "no file of users in the raw folder (none matches 'users*.dat')"
    else:
        why = "users.dat is empty"
    assert f"users would have no row: {why}" in str(err.value)
    cause = f"{why}, so users has no row"
    assert _quarantine(tmp_path) == [("ratings.dat", n, cause) for n in range(1, 21)]
    assert not list(DataLayout(tmp_path / "data").lake(DATASET).rglob("*.parquet"))
