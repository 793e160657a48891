"""DuckDB sessions: one shared database per process, isolated sessions, limits and spilling."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest

from flip_core.config import DuckDBConfig, IngestConfig
from flip_core.lake import ingest_dataset
from flip_core.lake.duck import SHARED, close_shared_database, open_session
from flip_core.layout import DataLayout
from flip_core.sql import load_sql
from tests.features_support import ml1m_spec

CONFIG = DuckDBConfig(memory_limit="1GB", threads=2)


@pytest.fixture(autouse=True)
def _new_shared_database() -> Iterator[None]:
    close_shared_database()
    yield
    close_shared_database()


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> str:
    row = con.execute("SELECT current_setting(?)", [name]).fetchone()
    assert row is not None
    return str(row[0])


def test_sessions_in_turn_share_one_database_and_nothing_else() -> None:
    with open_session(CONFIG) as con:
        first = SHARED.current
        con.execute("CREATE TEMP TABLE staged AS SELECT 1 AS x")
        con.execute("CREATE OR REPLACE TEMP TYPE source_name AS ENUM ('a.dat')")
        con.register("batch", con.sql("SELECT 2 AS y").to_arrow_table())
        assert con.execute("SELECT field_count_problem('a', 1, 2, '::')").fetchone() is not None
    with open_session(CONFIG) as con:
        assert SHARED.current is first is not None
        names = {row[0] for row in con.execute("SELECT name FROM (SHOW ALL TABLES)").fetchall()}
        assert names == set()  # the temp table and the registered view ended with the session
        with pytest.raises(duckdb.CatalogException, match="source_name"):
            con.execute("SELECT 'a.dat'::source_name").fetchall()
        # Each session gets the ingest macros and the configured limits.
        assert con.execute("SELECT field_count_problem('a', 1, 2, '::')").fetchone() == (
            "expected 2 fields separated by '::', found 1",
        )
        assert _setting(con, "threads") == "2"
        assert _setting(con, "preserve_insertion_order") == "False"


def test_a_session_opened_while_another_runs_gets_a_database_of_its_own() -> None:
    outer = open_session(CONFIG)
    try:
        assert outer.shared
        with open_session(CONFIG) as inner:
            inner.execute("CREATE TEMP TABLE t AS SELECT 41 AS x")
            assert inner.execute("SELECT x + 1 FROM t").fetchone() == (42,)
        assert outer.con.execute("SELECT count(*) FROM (SHOW ALL TABLES)").fetchone() == (0,)
        assert outer.con.execute("SELECT 1").fetchone() == (1,)
    finally:
        outer.close()
    again = open_session(CONFIG)  # the shared database is free again
    assert again.shared
    again.close()


def test_other_limits_open_a_database_with_those_limits() -> None:
    with open_session(CONFIG) as con:
        assert _setting(con, "threads") == "2"
    first = SHARED.current
    with open_session(DuckDBConfig(memory_limit="512MB", threads=1)) as con:
        assert _setting(con, "threads") == "1"
        assert _setting(con, "memory_limit") == "488.2 MiB"
    assert SHARED.current is not first


def test_each_session_spills_into_its_own_folder_even_after_a_spill(tmp_path: Path) -> None:
    tight = DuckDBConfig(memory_limit="64MB", threads=1)
    big_sort = (
        "SELECT count(*) FROM (SELECT md5(range::VARCHAR) AS h FROM range(2000000) ORDER BY h)"
    )
    with open_session(tight, temp_directory=tmp_path / "a") as con:
        assert _setting(con, "temp_directory") == str(tmp_path / "a")
        assert con.execute(big_sort).fetchone() == (2_000_000,)
    assert (tmp_path / "a").is_dir()  # it spilled there, so DuckDB keeps that folder ...
    with open_session(tight, temp_directory=tmp_path / "b") as con:  # ... and a new one comes
        assert _setting(con, "temp_directory") == str(tmp_path / "b")
        assert con.execute(big_sort).fetchone() == (2_000_000,)
    assert (tmp_path / "b").is_dir()
    # A configured folder wins over the caller's.
    configured = DuckDBConfig(memory_limit="64MB", threads=1, temp_directory=tmp_path / "c")
    with open_session(configured, temp_directory=tmp_path / "d") as con:
        assert _setting(con, "temp_directory") == str(tmp_path / "c")


def test_two_ingests_at_once_in_one_process_both_fill_their_lakes(
    synthetic_raw: Path, tmp_path: Path
) -> None:
    start = threading.Barrier(2)

    def ingest(name: str) -> dict[str, int]:
        start.wait()
        return ingest_dataset(
            synthetic_raw, tmp_path / name, ml1m_spec(), IngestConfig()
        ).table_rows

    with ThreadPoolExecutor(2) as pool:
        left, right = pool.map(ingest, ["left", "right"])
    lines = {
        t: sum(1 for line in (synthetic_raw / f"{t}.dat").open("rb") if line.strip())
        for t in ("ratings", "users", "movies")
    }
    assert left == right == lines
    for name in ("left", "right"):
        files = sorted((DataLayout(tmp_path / name).lake("ml-1m") / "ratings").rglob("*.parquet"))
        with duckdb.connect() as con:
            names = con.execute(
                "SELECT DISTINCT source_file FROM read_parquet($files)",
                {"files": [str(f) for f in files]},
            ).fetchall()
        assert names == [("ratings.dat",)]


def test_an_ingest_leaves_nothing_in_the_shared_database(
    synthetic_raw: Path, tmp_path: Path
) -> None:
    config = IngestConfig()
    ingest_dataset(synthetic_raw, tmp_path / "data", ml1m_spec(), config)
    used = SHARED.current
    with open_session(config.duckdb) as con:
        assert SHARED.current is used is not None
        made = {
            kind: con.execute(f"SELECT count(*) FROM duckdb_{kind}() WHERE NOT internal").fetchone()
            for kind in ("tables", "views", "types")
        }
        macros = con.execute("SELECT count(*) FROM duckdb_functions() WHERE NOT internal")
        assert made == {"tables": (0,), "views": (0,), "types": (0,)}
        # Only this session's own ingest macros (TEMP): none left by the ingest's session.
        own = load_sql("ingest/macros").count("CREATE OR REPLACE TEMP MACRO")
        assert own >= 1
        assert macros.fetchone() == (own,)
