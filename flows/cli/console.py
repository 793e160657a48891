"""What the `flip` commands share: error output and loading the config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from flip_core.config import ConfigError, FlipConfig
from flows.params import flow_config

err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1, label: str = "error") -> typer.Exit:
    """Print `label: message` on stderr and return the `typer.Exit(code)` to raise.

    The message is printed as it is: file names, raw lines and config values may hold `[...]`,
    which Rich would otherwise read as markup (and drop, or fail on). Long messages stay on one
    line (no wrapping at the terminal width), so they can be grepped from logs.
    """
    err_console.print(f"[bold red]{escape(label)}:[/] {escape(message)}", highlight=False)
    return typer.Exit(code=code)


def resolve_config(config: Path | None, overrides: list[str] | None, **named: Any) -> FlipConfig:
    """Defaults, the YAML file, `--set` overrides, then the command's named options (None:
    keep); exits 2 with a one-line error naming the bad key and its source."""
    try:
        return flow_config(config, overrides, **named)
    except ConfigError as exc:
        raise fail(str(exc), code=2, label="config error") from None
