"""`flip registry ls` and `flip registry set-champion`: what is live, and rolling it back.

Both read the registry at `mlflow.tracking_uri` (explicit config > MLFLOW_TRACKING_URI >
sqlite:///mlflow.db) and name it in every error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from flip_core.config import ConfigError, load_config
from flows.cli.console import fail
from flows.cli.options import ConfigOpt, SetOpt

if TYPE_CHECKING:
    from mlflow.entities.model_registry import RegisteredModel
    from mlflow.tracking import MlflowClient

console = Console(width=200)

NameOpt = Annotated[
    str | None,
    typer.Option("--name", "-n", help="Registered model (default: mlflow.registered_model)."),
]
SHOWN_TAGS = ("dataset", "protocol", "variant", "valid_auc", "test_logloss", "gate.decision")


def _open(
    config: Path | None, overrides: list[str] | None, name: str | None
) -> tuple[MlflowClient, str, str, RegisteredModel]:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        cfg = load_config(config, overrides or [])
    except ConfigError as exc:
        raise fail(str(exc), code=2, label="config error") from None
    uri = cfg.mlflow.tracking_uri
    name = name or cfg.mlflow.registered_model
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        first = (str(exc.message).strip().splitlines() or ["error"])[0]
        raise fail(f"registered model {name!r} in {uri}: {first}", code=2) from None
    return client, name, uri, model


def ls_command(config: ConfigOpt = None, set_: SetOpt = None, name: NameOpt = None) -> None:
    """List the versions of the registered model: aliases, dataset, protocol, gate metrics."""
    client, name, uri, model = _open(config, set_, name)
    aliases: dict[str, list[str]] = {}
    for alias, version in sorted(model.aliases.items()):
        aliases.setdefault(str(version), []).append(alias)
    console.print(
        f"{name} in {uri}: dataset {model.tags.get('dataset', '-')}, "
        f"champion v{model.aliases.get('champion', '-')}",
        markup=False,
        highlight=False,
    )
    versions = client.search_model_versions(f"name = '{name}'", order_by=["version_number DESC"])
    rows: list[tuple[str, ...]] = [("version", "aliases", *SHOWN_TAGS)]
    for v in versions:
        cells = [str(v.version), ",".join(aliases.get(str(v.version), [])) or "-"]
        rows.append((*cells, *(v.tags.get(key, "-") for key in SHOWN_TAGS)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        typer.echo(line.rstrip())


def set_champion_command(
    version: Annotated[str, typer.Argument(help="The version to serve (see `flip registry ls`).")],
    reason: Annotated[str, typer.Option(help="Why (kept as the version's tag champion.reason).")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    name: NameOpt = None,
) -> None:
    """Point alias `champion` at VERSION (a rollback, or a promotion by hand)."""
    from mlflow.exceptions import MlflowException

    client, name, uri, model = _open(config, set_, name)
    try:
        chosen = client.get_model_version(name, version)
    except MlflowException:
        raise fail(f"registered model {name!r} in {uri} has no version {version}", code=2) from None
    bound, dataset = model.tags.get("dataset"), chosen.tags.get("dataset")
    if bound is not None and dataset is not None and dataset != bound:
        raise fail(
            f"{name} v{version} was trained on dataset {dataset!r}; {name} holds {bound!r}", code=2
        )
    before = model.aliases.get("champion")
    client.set_registered_model_alias(name, "champion", version)
    client.set_model_version_tag(name, version, "champion.reason", reason)
    console.print(
        f"{name}@champion: v{before or '-'} -> v{version} in {uri} ({reason})",
        markup=False,
        highlight=False,
    )
