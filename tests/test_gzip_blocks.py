"""Streaming gzip inflate of raw files: exact bytes, bounded blocks, members, truncation."""

from __future__ import annotations

import gzip
import random
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flip_core.lake.lines import LineStats, RawFileError, gzip_blocks

Inflater = Callable[..., Any] | None


def _inflate(
    path: Path, chunk_bytes: int, inflater: Inflater, read_bytes: int = 16 << 20
) -> tuple[list[bytes], LineStats]:
    stats = LineStats()
    blocks = gzip_blocks(path, chunk_bytes, stats, read_bytes=read_bytes, decompressobj=inflater)
    return list(blocks), stats


def _text(rows: int, seed: int) -> bytes:
    rng = random.Random(seed)
    fields = ((rng.randint(1, 6040), rng.randint(1, 3952), rng.randint(1, 5)) for _ in range(rows))
    return "".join(f"{u}::{m}::{r}::{rng.randint(0, 10**9)}\n" for u, m, r in fields).encode()


@pytest.fixture(params=["default", "zlib"])
def inflater(request: pytest.FixtureRequest) -> Inflater:
    """Each test runs with the module's inflater (ISA-L when installed) and with plain zlib."""
    return zlib.decompressobj if request.param == "zlib" else None


@pytest.mark.parametrize("read_bytes", [7, 4096, 16 << 20])
def test_blocks_are_the_exact_bytes_and_never_larger_than_a_chunk(
    tmp_path: Path, inflater: Inflater, read_bytes: int
) -> None:
    data = _text(3000, seed=1) + b"0" * 200_000  # a run that compresses ~1000:1
    path = tmp_path / "ratings.dat.gz"
    path.write_bytes(gzip.compress(data))
    blocks, stats = _inflate(path, 10_000, inflater, read_bytes)
    assert b"".join(blocks) == data
    assert all(len(b) == 10_000 for b in blocks[:-1]) and 0 < len(blocks[-1]) <= 10_000
    assert not stats.truncated


def test_every_member_of_a_multi_member_file_is_read(tmp_path: Path, inflater: Inflater) -> None:
    parts = [_text(500, seed=s) for s in range(3)]
    path = tmp_path / "ratings.dat.gz"
    path.write_bytes(b"".join(gzip.compress(p) for p in parts))
    for chunk in (1_000, 1 << 20):
        blocks, stats = _inflate(path, chunk, inflater)
        assert b"".join(blocks) == b"".join(parts)
        assert not stats.truncated


@pytest.mark.parametrize("chunk", [997, 1 << 20])
def test_a_cut_stream_keeps_what_it_holds_and_is_marked_truncated(
    tmp_path: Path, inflater: Inflater, chunk: int
) -> None:
    data = _text(2000, seed=4)
    packed = gzip.compress(data)
    path = tmp_path / "ratings.dat.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    blocks, stats = _inflate(path, chunk, inflater)
    got = b"".join(blocks)
    assert stats.truncated
    assert len(got) > len(data) // 3 and data.startswith(got)


def test_corrupt_data_fails_naming_the_file(tmp_path: Path, inflater: Inflater) -> None:
    packed = bytearray(gzip.compress(_text(500, seed=5)))
    packed[40:60] = bytes(20)
    path = tmp_path / "ratings.dat.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(RawFileError, match=r"ratings.dat.gz: corrupt gzip data"):
        _inflate(path, 1 << 20, inflater)
