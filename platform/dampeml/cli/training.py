"""`dampeml train` and `dampeml models ...`: training runs and the model registry."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from dampeml.cli.config_file import log_invocation
from dampeml.cli.errors import clean_errors, console
from dampeml.cli.options import Address, NumCpus
from dampeml.errors import InputError

models_app = typer.Typer(
    help="The MLflow model registry: versions, aliases, promotion.", no_args_is_help=True
)


@models_app.callback()
@clean_errors
def _group(ctx: typer.Context) -> None:
    """The model registry: list, show, promote, export and import a model zoo."""
    from dampeml.cli.config_file import apply_config

    apply_config(ctx)  # `dampeml --config FILE` reaches the command through its group


@clean_errors
def train(
    ctx: typer.Context,
    network: Annotated[
        str, typer.Argument(help="network name, e.g. bgo-direction-low (see `dampeml models`)")
    ],
    dataset: Annotated[str, typer.Option(help="dataset URI built for this network's kind")],
    workers: Annotated[int, typer.Option(help="data-parallel Ray Train workers")] = 2,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per worker (0: CPU)")] = 0.0,
    epochs: Annotated[int, typer.Option(help="epochs")] = 3,
    preset: Annotated[str, typer.Option(help="small (tests, demo) or full (the paper's sizes)")] = "small",
    steps_per_epoch: Annotated[
        int | None, typer.Option(help="default: one pass over the train split")
    ] = None,
    storage: Annotated[
        str, typer.Option(help="checkpoint storage (shared URI on a cluster)")
    ] = "dampeml-runs",
    run_name: Annotated[str | None, typer.Option(help="Ray Train run name (default: network-time)")] = None,
    resume: Annotated[bool, typer.Option(help="resume run --run-name from its last checkpoint")] = False,
    init_from: Annotated[
        str | None,
        typer.Option(help="fine-tune: start from the weights of models:/NAME@ALIAS (or /VERSION)"),
    ] = None,
    address: Address = None,
    num_cpus: NumCpus = None,
) -> None:
    """Train a network data-parallel with Ray Train; log and register it in MLflow."""
    from dampeml.runtime import init_ray, local_cpus
    from dampeml.training.config import TrainConfig
    from dampeml.training.trainer import check_inputs, cpus_needed, train

    if resume and not run_name:
        raise InputError("--resume needs --run-name (the run to continue)")
    cfg = TrainConfig(
        network=network,
        dataset=dataset,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        epochs=epochs,
        preset=preset,
        steps_per_epoch=steps_per_epoch,  # type: ignore[arg-type]
        storage=storage,
        run_name=run_name,
        init_from=init_from,
    )
    check_inputs(cfg)  # before starting Ray
    init_ray(address=address, num_cpus=num_cpus or local_cpus(cpus_needed(cfg)))
    result = train(cfg, resume=resume)
    if result.mlflow_run_id:
        log_invocation(ctx, result.mlflow_run_id)
    t = Table(title=f"{network}: {result.run_name}")
    for col in ("epoch", "loss", "val_loss", "lr"):
        t.add_column(col, justify="right")
    for h in result.history:
        t.add_row(str(h["epoch"]), f"{h['loss']:.5g}", f"{h['val_loss']:.5g}", f"{h['lr']:.2g}")
    console.print(t)
    console.print("test: " + ", ".join(f"{k}={v:.5g}" for k, v in result.test.items()))
    if result.model_version:
        console.print(
            f"registered {network} version {result.model_version} (MLflow run {result.mlflow_run_id}); "
            f"promote with `dampeml models promote {network} {result.model_version}`"
        )


@models_app.command("list")
@clean_errors
def list_cmd(name: Annotated[str | None, typer.Argument(help="one registered model")] = None) -> None:
    """Registered models, their versions, aliases and test metrics."""
    from dampeml.registry.models import list_versions

    rows = list_versions(name)
    t = Table()
    for col in ("model", "version", "aliases", "metrics", "dataset"):
        t.add_column(col)
    for v in rows:
        metrics = ", ".join(f"{k}={float(x):.4g}" for k, x in v.tags.items() if k.startswith("test_"))
        t.add_row(v.name, v.version, ",".join(v.aliases), metrics, v.tags.get("dataset_version", ""))
    console.print(t if rows else "no registered models yet: `dampeml train ...` registers them")


@models_app.command()
@clean_errors
def show(name: Annotated[str, typer.Argument(help="registered model name")]) -> None:
    """All versions of one model."""
    list_cmd(name)


@models_app.command()
@clean_errors
def promote(
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[str, typer.Argument(help="version to promote")],
    alias: Annotated[str, typer.Option(help="alias to set")] = "production",
    force: Annotated[bool, typer.Option(help="promote even if its test metric is worse")] = False,
) -> None:
    """Point an alias at a version, refusing a version worse than the current one."""
    from dampeml.registry.models import promote as do_promote
    from dampeml.security import check_alias

    check_alias(alias)  # MLflow would refuse it with a traceback

    console.print(do_promote(name, version, alias, force))


@models_app.command("export-zoo")
@clean_errors
def export_zoo_cmd(
    out: Annotated[str, typer.Argument(help="folder for the zoo (model files and zoo.json)")],
    alias: Annotated[str, typer.Option(help="export every registered model at this alias")] = "reference",
    coarse_below: Annotated[
        float,
        typer.Option(
            help="deposited BGO energy (TeV) below which the chain these models were trained for runs its "
            "coarse Hough step (inf: every event); the report runs the zoo so",
            min=0.0,
        ),
    ] = 1.0,
    models: Annotated[
        str | None,
        typer.Option(
            help="comma-separated model names: export only these (a registry where two recipes promoted "
            "models to the same alias)"
        ),
    ] = None,
) -> None:
    """Write the models at an alias as a model zoo: Keras files and an index with their lineage.

    `--coarse-below` records the chain setting the models were trained for (the report runs them so).
    """
    from dampeml.registry.zoo import export_zoo, read_index

    names = None if models is None else [m.strip() for m in models.split(",") if m.strip()]
    path = export_zoo(alias, out, coarse_below, names)
    index = read_index(path.parent)
    console.print(f"exported {len(index['models'])} models at @{alias} -> {path}")


@models_app.command("import-zoo")
@clean_errors
def import_zoo_cmd(
    folder: Annotated[str, typer.Argument(help="a model zoo folder (e.g. zoo/reference)")],
    alias: Annotated[
        str | None, typer.Option(help="alias to register them under (default: the zoo's)")
    ] = None,
) -> None:
    """Register a model zoo's models in the local registry, loaded as data (weights only)."""
    from dampeml.registry.zoo import import_zoo, read_index, stale_note

    for m in import_zoo(folder, alias):
        console.print(f"{m.name} v{m.version}: {m.status}")
    note = stale_note(read_index(folder), "dampeml pipeline run recipes/chain.yaml --profile reference")
    if note:
        console.print(f"[yellow]{note}[/]")


@clean_errors
def align(
    network: Annotated[str, typer.Argument(help="BGO direction network, e.g. bgo-direction-mid")],
    flight: Annotated[str, typer.Option(help="flight-like event files: a path or a quoted glob")],
    alias: Annotated[
        str, typer.Option(help="alias of the base model; the aligned one gets it too")
    ] = "production",
    epochs: Annotated[int, typer.Option(help="epochs of the head's fit")] = 30,
    compare_full: Annotated[
        bool, typer.Option(help="also time training the whole network on the same events")
    ] = False,
) -> None:
    """Train the alignment head of a BGO network on flight runs (backbone frozen); register it."""
    from dampeml.io.datasource import expand_paths
    from dampeml.security import check_alias, check_job_paths
    from dampeml.training.alignment import align_registered

    check_alias(alias)
    check_job_paths(flight=flight)  # the glob itself, before it is expanded
    result, version, extra = align_registered(network, expand_paths(flight), alias, epochs, compare_full)
    t = Table(title=f"{network}: alignment on {result.n_fit} clean events, {result.n_held_out} held out")
    for col in ("held-out residual", "before", "after"):
        t.add_column(col, justify="right")
    for k in result.before:
        t.add_row(k, f"{result.before[k]:.3f}", f"{result.after[k]:.3f}")
    console.print(t)
    console.print(", ".join(f"{k}={v:.3g}" for k, v in extra.items()))
    if version:
        console.print(f"registered {network}-aligned version {version} as @{alias}")
    else:
        console.print("[yellow]the head did not lower the held-out residual: nothing registered[/]")
