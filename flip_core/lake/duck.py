"""DuckDB sessions with the configured resource limits, on one database per process.

Opening an in-memory DuckDB database costs ~15 ms of CPU (DuckDB builds its catalog of built-in
functions), and a fresh database's allocator starts cold: the first `COPY` of an ingest then
takes ~5,000 new pages from the kernel. So the lake code keeps one database per process and
leases connections on it (`open_session`). Everything a session creates is TEMP (tables,
macros, types) or registered on its connection, so it ends with the session. While one session
holds the shared database (a concurrent ingest in the same process), another gets a database of
its own, closed with it.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import duckdb

from flip_core.config import DuckDBConfig
from flip_core.sql import load_sql


class Session:
    """One job's connection (`con`); `close` ends it and frees the shared database for others."""

    def __init__(self, con: duckdb.DuckDBPyConnection, release: Callable[[], None] | None) -> None:
        self.con = con
        self.shared = release is not None  # `con` is a cursor on the process's shared database
        self._release = release

    def close(self) -> None:
        """End the session (again: nothing more happens)."""
        try:
            self.con.close()  # a cursor: its TEMP objects go; a database of its own: all of it
        finally:
            if self._release is not None:
                self._release()
                self._release = None

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def open_session(config: DuckDBConfig, temp_directory: Path | None = None) -> Session:
    """A connection limited by `config`, with the ingest macros loaded.

    DuckDB spills to `config.temp_directory`, else to `temp_directory`, else to its default
    (`.tmp` in the working folder).
    """
    spill = config.temp_directory or temp_directory
    if not SHARED.lock.acquire(blocking=False):
        return _prepared(_open_database(config, spill), None)
    try:
        con = SHARED.database(config, spill).cursor()
    except BaseException:
        SHARED.lock.release()
        raise
    return _prepared(con, SHARED.lock.release)


class SharedDatabase:
    """The process's database, re-made when the limits change or its spill folder cannot."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held by the session using the database
        self.current: duckdb.DuckDBPyConnection | None = None
        self._limits: tuple[str, int] | None = None
        self._default_spill = ""  # DuckDB's own temp_directory, read when a database opens

    def database(self, config: DuckDBConfig, spill: Path | None) -> duckdb.DuckDBPyConnection:
        limits = (config.memory_limit, config.threads)
        database = self.current
        if database is not None and self._limits == limits and self._point_spill(database, spill):
            return database
        self.close()
        database = _open_database(config, None)
        self.current, self._limits = database, limits
        self._default_spill = _setting(database, "temp_directory")
        # A new database has spilled nothing: it takes any folder.
        database.execute("SET temp_directory = ?", [self._spill_folder(spill)])
        return database

    def _point_spill(self, database: duckdb.DuckDBPyConnection, spill: Path | None) -> bool:
        """Point spilling at `spill`; False where DuckDB refuses (it spilled into the current
        folder, which it then keeps)."""
        folder = self._spill_folder(spill)
        if _setting(database, "temp_directory") == folder:
            return True
        try:
            database.execute("SET temp_directory = ?", [folder])
        except duckdb.Error:
            return False
        return True

    def _spill_folder(self, spill: Path | None) -> str:
        return str(spill) if spill is not None else self._default_spill

    def close(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current, self._limits = None, None


SHARED = SharedDatabase()  # `SHARED.current`: the open database, None while closed


def close_shared_database() -> None:
    """Close the process's shared database (its memory goes back); the next session opens a
    new one. Waits while a session uses it."""
    with SHARED.lock:
        SHARED.close()


atexit.register(close_shared_database)


def _open_database(config: DuckDBConfig, spill: Path | None) -> duckdb.DuckDBPyConnection:
    settings: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": config.memory_limit,
        "threads": config.threads,
        # The ingest SQL needs only built-in functions and Parquet: not probing for other
        # extensions saves ~9 ms of each connect.
        "autoload_known_extensions": False,
        "autoinstall_known_extensions": False,
        # Row order inside a lake file carries no meaning (line_number does); COPY may run in
        # parallel.
        "preserve_insertion_order": False,
    }
    if spill is not None:
        settings["temp_directory"] = str(spill)
    return duckdb.connect(config=settings)


def _setting(con: duckdb.DuckDBPyConnection, name: str) -> str:
    row = con.execute("SELECT current_setting(?)", [name]).fetchone()
    assert row is not None
    return str(row[0])


def _prepared(con: duckdb.DuckDBPyConnection, release: Callable[[], None] | None) -> Session:
    """`con` with the session settings and macros, as a session (closed if that fails)."""
    session = Session(con, release)
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute(load_sql("ingest/macros"))
    except BaseException:
        session.close()
        raise
    return session
