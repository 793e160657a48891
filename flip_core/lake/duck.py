"""DuckDB connections with the configured resource limits."""

from __future__ import annotations

from pathlib import Path

import duckdb

from flip_core.config import DuckDBConfig
from flip_core.sql import load_sql


def connect(config: DuckDBConfig, temp_directory: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory connection limited by `config`, with the ingest macros loaded.

    `temp_directory` is used for spilling when the config names none.
    """
    settings: dict[str, str | bool | int | float | list[str]] = {
        "memory_limit": config.memory_limit,
        "threads": config.threads,
        # The ingest SQL needs only built-in functions and Parquet: not probing for other
        # extensions saves ~9 ms of each connect.
        "autoload_known_extensions": False,
        "autoinstall_known_extensions": False,
    }
    spill = config.temp_directory or temp_directory
    if spill is not None:
        settings["temp_directory"] = str(spill)
    con = duckdb.connect(config=settings)
    con.execute("SET enable_progress_bar = false")
    # Row order inside a lake file carries no meaning (line_number does); COPY may run in parallel.
    con.execute("SET preserve_insertion_order = false")
    con.execute(load_sql("ingest/macros"))
    return con
