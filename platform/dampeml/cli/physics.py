"""`dampeml simulate-mission`, `dampeml flux` and `dampeml flux-compare`: a flight-like run of known
composition, the electron flux measured from flight-like data with electron and proton MC, and the
flux's scores and energy estimates compared on MC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dampeml.cli.config_file import write_invocation
from dampeml.cli.errors import clean_errors, console


@clean_errors
def simulate_mission(
    ctx: typer.Context,
    mission: Annotated[Path, typer.Argument(help="a mission file (YAML: components, live time, runs, seed)")],
    out: Annotated[Path, typer.Option(help="folder for run_<id>.root, truth/ and mission.json")],
) -> None:
    """Simulate a flight-like run of known composition: flight files without truth, the truth sealed."""
    from dampeml.physics.mission import load_mission
    from dampeml.physics.mission import simulate_mission as run
    from dampeml.security import check_job_paths

    check_job_paths(out=out)
    m = load_mission(mission)
    manifest = run(m, out)
    write_invocation(ctx, out)
    console.print(f"mission {m.name}: {m.runs} run(s), {m.live_time_s:g} s live time: {manifest}")


@clean_errors
def flux(
    ctx: typer.Context,
    flight: Annotated[
        str, typer.Option(help="flight data: event files ('runs/*.root') or a reprocessing output")
    ],
    electron_mc: Annotated[
        str, typer.Option(help="electron MC, as --flight (event files or reprocessing output)")
    ],
    proton_mc: Annotated[str, typer.Option(help="proton MC, as --flight")],
    out: Annotated[Path, typer.Option(help="folder for flux.md, flux.csv, flux.json, flux.png")],
    bins: Annotated[
        str, typer.Option(help="energy bin edges (GeV): 'LOW:HIGH:N' log-spaced, or 'E0,E1,...'")
    ] = "40:400:4",
    score: Annotated[
        str,
        typer.Option(
            help="zeta; electron_score (reprocessing outputs); from event files a registered classifier "
            "(electron-proton, electron-proton-cnn, electron-proton-dnn) or combined (HAMF and DNN)"
        ),
    ] = "zeta",
    energy: Annotated[
        str,
        typer.Option(
            help="standard (the deposit, corrected from MC) or bgo-energy (the network; event files)"
        ),
    ] = "standard",
    models_alias: Annotated[str, typer.Option(help="registry alias of the networks used")] = "production",
    efficiency: Annotated[
        float, typer.Option(help="electron efficiency of the cut in each bin", min=0.5, max=0.999)
    ] = 0.9,
    selection: Annotated[str, typer.Option(help="fiducial or non-fiducial showers")] = "fiducial",
    live_time: Annotated[
        float | None, typer.Option(help="live time (s); default: the flight files' own")
    ] = None,
    fit_proton_template: Annotated[
        bool,
        typer.Option(
            help="shift each bin's proton MC scores so their median meets the flight's (protons dominate it)"
        ),
    ] = False,
    injected: Annotated[
        Path | None,
        typer.Option(
            help="a mission file or simulated mission folder: its electron spectrum drawn and tabulated "
            "beside the measured flux, with the pulls (a closure)"
        ),
    ] = None,
) -> None:
    """Measure the electron flux by cut and count (seed 001): efficiency and background from MC,
    acceptance from the electron MC, per energy bin with statistical errors."""
    from dampeml.physics.job import FluxRequest, run_flux
    from dampeml.security import check_job_paths

    check_job_paths(out=out, flight=flight, electron_mc=electron_mc, proton_mc=proton_mc)
    request = FluxRequest(flight, electron_mc, proton_mc, out, _bins(bins), score, energy, efficiency,
                          _selection(selection), live_time, fit_proton_template, injected,
                          models_alias)  # fmt: skip
    path, measurement = run_flux(request)
    write_invocation(ctx, out)
    console.print(f"flux in {len(measurement.points)} bins: {path}")


@clean_errors
def flux_compare(
    ctx: typer.Context,
    electron_mc: Annotated[str, typer.Option(help="electron MC event files ('mc/e_*.root')")],
    proton_mc: Annotated[str, typer.Option(help="proton MC event files, not used to train the networks")],
    out: Annotated[Path, typer.Option(help="folder for compare.md, compare.json, roc.png, energy.png")],
    scores: Annotated[
        str, typer.Option(help="comma-separated scores: zeta, the classifiers, combined")
    ] = "zeta,electron-proton,electron-proton-cnn,electron-proton-dnn,combined",
    energy_network: Annotated[bool, typer.Option(help="compare the bgo-energy network's energy too")] = True,
    bins: Annotated[
        str, typer.Option(help="energy bin edges (GeV): 'LOW:HIGH:N' log-spaced, or 'E0,E1,...'")
    ] = "40:400:4",
    efficiency: Annotated[
        float,
        typer.Option(help="electron efficiency at which the proton rejection is quoted", min=0.5, max=0.999),
    ] = 0.9,
    selection: Annotated[str, typer.Option(help="fiducial or non-fiducial showers")] = "fiducial",
    models_alias: Annotated[str, typer.Option(help="registry alias of the networks")] = "production",
) -> None:
    """Compare the flux's electron/proton scores (per energy bin: ROC, AUC, proton rejection) and its
    energy estimates (bias and resolution, fiducial and non-fiducial) on MC, side by side."""
    from dampeml.io.datasource import expand_paths
    from dampeml.physics.compare import compare, read_mc, write_comparison
    from dampeml.physics.networks import RegisteredNetworks
    from dampeml.physics.samples import check_choice
    from dampeml.security import check_job_paths

    check_job_paths(out=out, electron_mc=electron_mc, proton_mc=proton_mc)
    chosen = _selection(selection)
    names = [s.strip() for s in scores.split(",") if s.strip()]
    for name in names:
        check_choice(name, "standard")
    edges = _bins(bins)
    networks = RegisteredNetworks(models_alias)
    electrons = read_mc(expand_paths(electron_mc), names, networks, energy_network)
    protons = read_mc(expand_paths(proton_mc), names, networks, False)
    result = compare(electrons, protons, edges, chosen, efficiency)
    settings = {"electron MC": f"{electron_mc} ({len(electrons.deposit_mev)} events)",
                "proton MC": f"{proton_mc} ({len(protons.deposit_mev)} events)", "selection": selection,
                "rejection at": f"{efficiency:.0%} electron efficiency",
                "networks": f"@{models_alias}"}  # fmt: skip
    path = write_comparison(result, out, settings)
    write_invocation(ctx, out)
    console.print(f"{len(names)} scores in {len(edges) - 1} bins: {path}")


def _selection(name: str) -> int:
    from dampeml.physics.selection import CLASSES

    if name not in CLASSES[1:]:
        raise typer.BadParameter(f"--selection {name!r}: use fiducial or non-fiducial")
    return CLASSES.index(name)


def _bins(text: str):
    import numpy as np

    try:
        if ":" in text:
            lo, hi, n = text.split(":")
            edges = np.geomspace(float(lo), float(hi), int(n) + 1)
        else:
            edges = np.array([float(x) for x in text.split(",")])
    except ValueError:
        raise typer.BadParameter(f"--bins {text!r}: give 'LOW:HIGH:N' or 'E0,E1,...' (GeV)") from None
    if len(edges) < 2 or np.any(np.diff(edges) <= 0) or edges[0] <= 0:
        raise typer.BadParameter(f"--bins {text!r}: edges must be positive and increasing")
    return edges
