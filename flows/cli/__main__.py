"""`python -m flows.cli ...` runs the `flip` command line."""

from flows.cli.main import app

app()
