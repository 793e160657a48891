"""Error output shared by the `flip` commands."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

err_console = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1, label: str = "error") -> typer.Exit:
    """Print `label: message` on stderr and return the `typer.Exit(code)` to raise.

    The message is printed as it is: file names, raw lines and config values may hold `[...]`,
    which Rich would otherwise read as markup (and drop, or fail on). Long messages stay on one
    line (no wrapping at the terminal width), so they can be grepped from logs.
    """
    err_console.print(f"[bold red]{escape(label)}:[/] {escape(message)}", highlight=False)
    return typer.Exit(code=code)
