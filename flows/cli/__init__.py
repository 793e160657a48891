"""The `flip` command line: one module per command group; `flows.cli.main` assembles them."""

from flows.cli.main import app

__all__ = ["app"]
