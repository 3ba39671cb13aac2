"""`dampeml` entry point.

Exit codes (dampeml.cli.errors): 0 done, 2 bad input or usage (one line naming the file,
field or option and what to do), 1 a job that could not finish (with how to resume), 130
interrupted; a bug keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from dampeml.cli.config_file import read_config, write_invocation
from dampeml.cli.errors import clean_errors, console
from dampeml.cli.options import Address, NumCpus
from dampeml.detector.simulation import SimulationConfig
from dampeml.errors import InputError

app = typer.Typer(
    name="dampeml",
    help="Deep-learning reconstruction for DAMPE: simulate, build datasets, train, register, reprocess.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
@clean_errors
def _console(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="a YAML file of the command's options (as `--help` names them); flags win"
        ),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="also show Ray's, Ray Data's and TensorFlow's own messages (else: Ray's session logs, and "
            "what native code prints in $TMPDIR/dampeml/ or DAMPEML_LOG_DIR)",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="only warnings and errors")] = False,
) -> None:
    """Deep-learning reconstruction for DAMPE: simulate, build datasets, train, register, reprocess."""
    from dampeml import logs

    if verbose and quiet:
        raise typer.BadParameter("give --verbose or --quiet, not both")
    logs.configure(1 if verbose else -1 if quiet else 0)
    console.quiet = quiet
    if not verbose and os.isatty(2) and ctx.invoked_subcommand:  # a person at a terminal
        _, restore = logs.divert_native_stderr(ctx.invoked_subcommand)
        ctx.call_on_close(restore)
    if config is not None:
        read_config(ctx, config)


def _register_subcommands() -> None:
    from dampeml.cli.capacity import capacity
    from dampeml.cli.dataset import app as dataset_app
    from dampeml.cli.evaluate import evaluate
    from dampeml.cli.explain import explain
    from dampeml.cli.physics import flux, flux_compare, simulate_mission
    from dampeml.cli.pipeline import app as pipeline_app
    from dampeml.cli.reference import config_reference
    from dampeml.cli.reprocess import reprocess
    from dampeml.cli.training import align, models_app, train
    from dampeml.cli.tune import tune

    app.add_typer(dataset_app, name="dataset")
    app.add_typer(models_app, name="models")
    app.add_typer(pipeline_app, name="pipeline")
    app.command()(train)
    app.command()(align)
    app.command()(evaluate)
    app.command()(explain)
    app.command("simulate-mission")(simulate_mission)
    app.command()(flux)
    app.command()(flux_compare)
    app.command()(reprocess)
    app.command()(tune)
    app.command("config-reference")(config_reference)
    app.command()(capacity)


@app.command()
@clean_errors
def simulate(
    particle: Annotated[str, typer.Option(help="proton, helium or electron")],
    events: Annotated[int, typer.Option(help="accepted events to write (crossing all sub-detectors)")],
    energy_min: Annotated[float, typer.Option(help="minimum kinetic energy, GeV")],
    energy_max: Annotated[float, typer.Option(help="maximum kinetic energy, GeV")],
    out: Annotated[Path, typer.Option(help="output ROOT file")],
    spectrum_index: Annotated[float, typer.Option(help="dN/dE ~ E^-index")] = 1.0,
    mode: Annotated[str, typer.Option(help="mc (with truth) or flight (no truth, misaligned)")] = "mc",
    seed: Annotated[int, typer.Option(help="random seed; same seed, same events")] = 0,
    run_id: Annotated[int | None, typer.Option(help="run number (default: the seed)")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing output file")] = False,
    simulation_version: Annotated[
        int | None,
        typer.Option(
            help="the simulation's physics (default: the current version; an earlier one to compare "
            "with it: docs/simulation.md)"
        ),
    ] = None,
) -> None:
    """Simulate DAMPE events (isotropic flux, power-law spectrum) into a ROOT event file."""
    from rich.progress import Progress

    from dampeml.cli.checks import check_output_file, check_simulation_options
    from dampeml.detector.simulation import MAX_EVENTS_PER_FILE
    from dampeml.detector.simulation import simulate as run_simulation
    from dampeml.io.root_writer import write_event_file
    from dampeml.security import check_job_paths

    # every check before simulating: a run of hours is not lost to a typo in --out
    check_simulation_options(
        events, energy_min, energy_max, spectrum_index, seed, max_events=MAX_EVENTS_PER_FILE
    )
    check_job_paths(out=out)
    check_output_file(out, "--out", overwrite)
    cfg = SimulationConfig(
        particle=particle,
        n_events=events,
        energy_min=energy_min,
        energy_max=energy_max,
        spectrum_index=spectrum_index,
        mode=mode,
        seed=seed,
        run_id=run_id,
        **({} if simulation_version is None else {"version": simulation_version}),
    )  # type: ignore[arg-type]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"simulating {particle}", total=events)
        branches, metadata = run_simulation(cfg, progress=lambda k: progress.advance(task, k))
    write_event_file(out, branches, metadata)
    acc = events / max(metadata["n_generated"], 1)
    console.print(
        f"wrote {events} {mode} {particle} events to {out} "
        f"({metadata['n_generated']} generated, acceptance {acc:.2%})"
    )


@app.command("sim-plots")
@clean_errors
def sim_plots(
    files: Annotated[list[Path], typer.Argument(help="event files (MC; flight files add to the displays)")],
    out: Annotated[Path, typer.Option(help="directory for the PNG plots")],
) -> None:
    """Draw the simulation's validation plots (profiles, backsplash, charges, event display)."""
    from dampeml.cli.checks import check_output_folder
    from dampeml.evaluation.simulation_plots import make_validation_plots
    from dampeml.security import check_storage

    for i, f in enumerate(files):
        check_storage(f, what=f"event file {i + 1}" if len(files) > 1 else "event file")
    check_storage(out, what="--out")
    check_output_folder(str(out), "--out")
    written = make_validation_plots([str(f) for f in files], out)
    for p in written:
        console.print(f"  {p}")
    console.print(f"wrote {len(written)} plots to {out}")


@app.command()
@clean_errors
def demo(
    workdir: Annotated[Path, typer.Option(help="where every output of the demo goes")] = Path("dampeml-work"),
    events: Annotated[int, typer.Option(help="events per MC particle sample")] = 2000,
    epochs: Annotated[
        int | None,
        typer.Option(help="training epochs of every network (default: the recipe's demo profile, 6 or 10)"),
    ] = None,
) -> None:
    """Run the platform end to end, small, on this machine (the README's first command).

    Simulate, build datasets, train and register all networks, align to a flight-like run,
    reprocess it, and write the physics report on held-out MC. Rerunning resumes.
    """
    from dampeml.pipeline.demo import run_demo

    report = run_demo(workdir, events_per_particle=events, epochs=epochs, console=console)
    console.print(f"[bold green]demo done[/]: outputs in {workdir}, physics report {report}")


@app.command("simulate-production")
@clean_errors
def simulate_production(
    ctx: typer.Context,
    particle: Annotated[str, typer.Option(help="proton, helium or electron")],
    events: Annotated[int, typer.Option(help="accepted events in total, over all shards")],
    energy_min: Annotated[float, typer.Option(help="minimum kinetic energy, GeV")],
    energy_max: Annotated[float, typer.Option(help="maximum kinetic energy, GeV")],
    out: Annotated[Path, typer.Option(help="output directory (visible from every Ray worker)")],
    spectrum_index: Annotated[float, typer.Option(help="dN/dE ~ E^-index")] = 1.0,
    mode: Annotated[str, typer.Option(help="mc (with truth) or flight (no truth, misaligned)")] = "mc",
    seed: Annotated[int, typer.Option(help="base seed; each shard's seed derives from it and its index")] = 0,
    events_per_shard: Annotated[int, typer.Option(help="events per shard (one ROOT file each)")] = 2000,
    address: Address = None,
    num_cpus: NumCpus = None,
    progress: Annotated[bool, typer.Option(help="a progress bar (off for job logs)")] = True,
) -> None:
    """Simulate many events as seeded shards on Ray; a rerun makes only missing or broken shards."""
    from dampeml.cli.checks import check_simulation_options
    from dampeml.detector.production import ProductionRequest, run_production
    from dampeml.detector.simulation import MAX_EVENTS_PER_FILE

    check_simulation_options(events, energy_min, energy_max, spectrum_index, seed)
    if not 1 <= events_per_shard <= MAX_EVENTS_PER_FILE:
        raise InputError(f"--events-per-shard {events_per_shard}: must be in 1..{MAX_EVENTS_PER_FILE}")
    request = ProductionRequest(
        particle=particle,
        n_events=events,
        energy_min=energy_min,
        energy_max=energy_max,
        out_dir=str(out),
        spectrum_index=spectrum_index,
        mode=mode,
        base_seed=seed,
        events_per_shard=events_per_shard,
    )
    run_production(  # failed shards: a ProductionError (a JobError: exit 1, "rerun to finish")
        request,
        progress=progress,
        log=lambda line: console.print(line, markup=False, highlight=False),
        ray_address=address,
        num_cpus=num_cpus,
    )
    write_invocation(ctx, out)


def main() -> None:  # pragma: no cover
    sys.exit(app())


_register_subcommands()


if __name__ == "__main__":  # python -m dampeml.cli.main
    main()
