"""The `flip` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flip_core.data.synth import write_synthetic_movielens
from flip_core.data.synth_apps import write_synthetic_apps
from flows.cli.benchmark import benchmark_command
from flows.cli.console import fail, resolve_config
from flows.cli.features import features_command
from flows.cli.flip import finetune_command, pretrain_command
from flows.cli.ingest import download_command, ingest_command
from flows.cli.options import ConfigOpt, DataRootOpt, DatasetOpt, SetOpt
from flows.cli.registry import ls_command as registry_ls_command
from flows.cli.registry import set_champion_command
from flows.cli.replay import replay_command
from flows.cli.score import score_command
from flows.cli.train import train_command

app = typer.Typer(
    help="FLIP CTR pipeline: ingest, features, pretrain, finetune, register.", no_args_is_help=True
)
config_app = typer.Typer(help="Inspect configuration.", no_args_is_help=True)
data_app = typer.Typer(help="Raw data: synthesize, download, ingest.", no_args_is_help=True)
registry_app = typer.Typer(help="Registered models: list, set the champion.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(registry_app, name="registry")
registry_app.command("ls")(registry_ls_command)
registry_app.command("set-champion")(set_champion_command)
data_app.command("ingest")(ingest_command)
data_app.command("download")(download_command)
data_app.command("replay")(replay_command)
app.command("benchmark")(benchmark_command)
app.command("features")(features_command)
app.command("pretrain")(pretrain_command)
app.command("finetune")(finetune_command)
app.command("train")(train_command)
app.command("score")(score_command)

console = Console()


@config_app.command("show")
def config_show(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Print the fully resolved configuration as YAML."""
    console.print(resolve_config(config, set_).to_yaml(), end="", markup=False, highlight=False)


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the files to.")],
    schema: Annotated[
        str,
        typer.Option(
            help="movielens (users/movies/ratings.dat; spec configs/datasets/synth-ml-1m.yaml) "
            "or apps (users/apps/events.csv; spec configs/datasets/synth-apps.yaml)."
        ),
    ] = "movielens",
    users: Annotated[int, typer.Option(min=1, help="Number of users.")] = 500,
    items: Annotated[int, typer.Option(min=1, help="Number of items (movies or apps).")] = 400,
    events_per_user: Annotated[
        int, typer.Option(min=1, help="Mean events (ratings) per user.")
    ] = 60,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a seeded synthetic click log of one of two shapes, with learnable signal."""
    if schema == "movielens":
        counts = write_synthetic_movielens(out, users, items, events_per_user, seed)
        what = f"{counts.users} users, {counts.movies} movies, {counts.ratings} ratings"
    elif schema == "apps":
        apps = write_synthetic_apps(out, users, items, events_per_user, seed)
        what = f"{apps.users} users, {apps.apps} apps, {apps.events} events"
    else:
        raise fail(f"--schema {schema!r}: expected movielens or apps", code=2)
    console.print(f"wrote {what} to {out}", markup=False)


@app.command("run")
def run_nightly(
    config: ConfigOpt = None,
    set_: SetOpt = None,
    data_root: DataRootOpt = None,
    dataset: DatasetOpt = None,
    raw_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder of raw files the dataset spec reads (the inbox); required "
            "unless --synthetic."
        ),
    ] = None,
    synthetic: Annotated[
        bool,
        typer.Option(
            "--synthetic",
            help="Train on synthetic data, e.g. `make demo`: its own dataset, so --dataset must "
            "be a synth-* spec (e.g. configs/datasets/synth-ml-1m.yaml).",
        ),
    ] = False,
) -> None:
    """Run the nightly retraining flow once, locally (a temporary Prefect server that dies with
    this command, unless PREFECT_API_URL points at one)."""
    from flows.cli.local_server import local_prefect_server
    from flows.nightly_retrain import nightly_retrain

    checked = resolve_config(  # fail fast, before Prefect starts
        config,
        [
            *(set_ or []),
            *(["synth.enabled=true"] if synthetic else []),
            *([f"paths.dataset={dataset}"] if dataset is not None else []),
        ],
    )
    if raw_dir is None and checked.paths.raw_dir is None and not checked.synth.enabled:
        from tasks.raw_data import NO_RAW_DATA

        raise fail(NO_RAW_DATA, code=2)
    if checked.synth.enabled:
        from flip_core.data.build import dataset_spec
        from flip_core.spec import SpecError
        from tasks.raw_data import synthetic_spec_error

        try:
            wrong = synthetic_spec_error(dataset_spec(checked).name)
        except SpecError as exc:
            raise fail(str(exc), code=2, label="dataset spec error") from None
        if wrong is not None:
            raise fail(wrong, code=2)
    with local_prefect_server():
        result = nightly_retrain(
            config_file=config,
            dataset=dataset,
            data_root=data_root,
            raw_dir=raw_dir,
            synthetic=True if synthetic else None,
            overrides=set_,
        )
    for key, value in result.items():
        console.print(f"{key}: {value}", markup=False, highlight=False)
    if "mlflow_ui" in result:
        console.print(
            f"Where to look in MLflow: {result['mlflow_ui']}, open mlflow_parent_run "
            f"(every stage's run nested under it) or the links in mlflow_runs above, and the "
            f"registered model {result['registered_model']}.",
            markup=False,
            highlight=False,
        )
