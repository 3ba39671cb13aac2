"""The main job on the embedded default, small: what the README's first command runs.

1. simulate a mixed MC run (p, He, e) and a flight-like run; draw the validation plots;
2. build the small variant of every network's dataset with Ray Data, and
3. train the six networks (eight models, small presets) with Ray Train, register them in
   MLflow and promote them to `production` (gated): both are the `demo` profile of the
   chain's training recipe (recipes/chain.yaml), run by the same code as `dampeml pipeline run`;
4. align the BGO networks to the flight-like run (alignment head, backbone frozen);
5. reprocess the flight-like run with the registered chain (Ray Data, actor pool);
6. evaluate the chain and the standard reconstruction on held-out MC: the physics report, with
   the shipped reference models (zoo/reference, imported as data under `reference`) beside them;
7. measure the electron flux of a flight-like run of known composition (zeta, the standard energy)
   against its injected spectrum: a section of the report.

Every stage reuses what a previous run finished (files, datasets, promoted models, committed
outputs), so an interrupted demo resumes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from dampeml.detector.simulation import SIMULATION_VERSION, SimulationConfig, simulate
from dampeml.evaluation.report import collect, write_report
from dampeml.evaluation.simulation_plots import make_validation_plots
from dampeml.inference.predictor import ReprocessError
from dampeml.io.root_reader import EventFileError, inspect_file
from dampeml.io.root_writer import write_event_file
from dampeml.models.catalog import aligned_name
from dampeml.paths import DATASET_SPECS, RECIPES, ZOO
from dampeml.physics.report import flux_table
from dampeml.pipeline.recipe import load_recipe
from dampeml.reconstruction.chain import Chain
from dampeml.registry.models import RegistryError, list_versions, version_of
from dampeml.registry.tracking import tracking_uri
from dampeml.training.alignment import AlignmentError, align_registered

#: The shipped recipe (package data: dampeml.paths).
RECIPE = RECIPES / "chain.yaml"
#: The reference models trained by the recipe's `reference` profile, shipped as a model zoo.
REFERENCE_ZOO = ZOO / "reference"
RETRAIN_REFERENCE = "dampeml pipeline run recipes/chain.yaml --profile reference --workdir ref-work"
#: The demo's MC: the paper's energy ranges from where the high-energy trigger records events (hadrons
#: from 50 GeV, electrons from 5 GeV; docs/simulation.md), shortened so a laptop run takes seconds.
DEMO_SAMPLES = (
    ("proton", 50.0, 1e6, "mc"),
    ("helium", 50.0, 1e6, "mc"),
    ("electron", 5.0, 5e4, "mc"),
    ("proton", 50.0, 1e6, "flight"),
)


#: Held-out MC for the report: other seeds than anything a dataset or the demo's MC used.
EVALUATION_SAMPLES = DEMO_SAMPLES[:3]
EVALUATION_SEED = 9001


def run_demo(
    workdir: Path,
    events_per_particle: int = 2000,
    epochs: int | None = None,
    console: Console | None = None,
) -> Path:
    """The whole platform, small, under `workdir`; returns the path of the physics report."""

    console = console or Console(stderr=True, soft_wrap=True)  # paths printed whole
    workdir = Path(workdir).resolve()
    sim_dir = workdir / "simulation"
    console.rule("1. simulation")
    files = [
        simulate_file(
            sim_dir / f"{particle}_{mode}_s{seed}.root",
            particle,
            events_per_particle,
            e_min,
            e_max,
            mode,
            seed,
            console,
        )
        for seed, (particle, e_min, e_max, mode) in enumerate(DEMO_SAMPLES, start=1)
    ]
    flight = [f for f in files if "_flight_" in f]
    plot_dir = workdir / "plots" / "simulation"
    make_validation_plots(files, plot_dir)
    console.print(f"validation plots in {plot_dir}")

    console.rule("2-3. datasets (Ray Data), training (Ray Train) and registry (MLflow)")
    train_demo(workdir, epochs, console)
    reference = import_reference(console)

    console.rule("4. alignment to the flight-like run")
    align_demo(flight, console)

    console.rule("5. reprocessing the flight-like run (Ray Data)")
    reprocess_demo(flight, workdir / "reprocessed", console)

    console.rule("6. physics report on held-out MC")
    held_out = [
        simulate_file(
            sim_dir / "evaluation" / f"{particle}_s{EVALUATION_SEED + i}.root",
            particle,
            events_per_particle,
            e_min,
            e_max,
            mode,
            EVALUATION_SEED + i,
            console,
        )
        for i, (particle, e_min, e_max, mode) in enumerate(EVALUATION_SAMPLES)
    ]
    console.rule("7. the electron flux of a flight-like run of known composition")
    flux = flux_demo(workdir, sim_dir, events_per_particle, console)
    report = evaluate_demo(held_out, workdir / "report", console, *reference, sections=flux)
    console.rule("done")
    console.print(f"physics report: {report}")
    console.print(f"models: `dampeml models list` (MLflow store {tracking_uri()})")
    return report


def simulate_file(
    path: Path, particle: str, n: int, e_min: float, e_max: float, mode: str, seed: int, console: Console
) -> str:
    """One simulated event file, reused when a complete one is already there."""
    if path.exists() and _complete(path, n):
        console.print(f"reusing {path}")
        return str(path)
    cfg = SimulationConfig(particle, n, e_min, e_max, mode=mode, seed=seed)  # type: ignore[arg-type]
    branches, metadata = simulate(cfg)
    write_event_file(path, branches, metadata)
    console.print(f"simulated {n} {mode} {particle} events -> {path} ({metadata['n_generated']} generated)")
    return str(path)


def align_demo(flight_files: list[str], console: Console) -> None:
    """Alignment head of every BGO network on the flight-like run, where it has enough clean events."""
    from dampeml.registry.bootstrap import BGO_NETWORKS

    for network in BGO_NETWORKS:
        base = f"{network} v{version_of(network, 'production')}"
        done = current_version(aligned_name(network), "production")
        if done and done.tags.get("base_model") == base:
            console.print(f"{network}: {aligned_name(network)} v{done.version} aligns {base}: reused")
            continue
        try:
            result, version, _ = align_registered(network, flight_files)
        except AlignmentError as exc:
            console.print(f"{network}: not aligned ({exc})")
            continue
        before, after = result.before["residual68_mm"], result.after["residual68_mm"]
        what = f"registered {network}-aligned v{version}" if version else "not registered (no gain)"
        console.print(
            f"{network}: held-out BGO-STK residual (68%) {before:.2f} -> {after:.2f} mm "
            f"on {result.n_held_out} events; {what}"
        )


def reprocess_demo(flight_files: list[str], out: Path, console: Console) -> None:
    from dampeml.inference.reprocess import ReprocessConfig, reprocess

    cfg = ReprocessConfig(inputs=flight_files, out=str(out), actors=2)
    try:
        result = reprocess(cfg)
    except ReprocessError as exc:  # outputs of models that are no longer @production: redo them
        console.print(f"replacing stale outputs: {exc}")
        result = reprocess(replace(cfg, overwrite=True))
    totals = result.summary["totals"]
    console.print(f"reprocessed {totals['written']} events ({totals['quarantined']} quarantined) -> {out}")


def import_reference(console: Console) -> tuple[Any, str | None]:
    """Register the shipped reference models under `reference`: (the ChainConfig they were trained
    for, or None when they were not imported; what the report must say).

    The zoo's files are read as data (weights only; dampeml.registry.zoo) and imported once.
    """
    from dampeml.registry.zoo import ZooError, chain_config, import_zoo, read_index, stale_note

    try:
        imported = import_zoo(REFERENCE_ZOO)
        index = read_index(REFERENCE_ZOO)
    except ZooError as exc:
        console.print(f"reference models not imported: {exc}")
        return None, f"the reference models were not imported: {exc}"
    note = stale_note(index, RETRAIN_REFERENCE)
    done = sum(m.status == "imported" for m in imported)
    console.print(f"reference models: {done} imported, {len(imported) - done} current, from {REFERENCE_ZOO}")
    if note:
        console.print(f"[yellow]{note}[/]")
    return chain_config(index), note


#: The flux stage's run: the shipped mission's electrons and protons at DAMPE's fluxes, for a short live
#: time on the MC detector (a closure of the analysis alone).
FLUX_MISSION = DATASET_SPECS / "missions" / "electrons-protons.yaml"
FLUX_MISSION_CHANGES = {"name": "demo", "live_time_s": 12000.0, "runs": 1, "seed": 77, "detector": "nominal"}
#: its MC (particle, events per the demo's events per particle, energy range), seeds apart from the rest
FLUX_MC = (("electron", 1, 20.0, 2000.0), ("proton", 3, 50.0, 5000.0))
FLUX_SEED = 7001


def flux_demo(workdir: Path, sim_dir: Path, events: int, console: Console) -> list[str]:
    """The flux of FLUX_MISSION with electron and proton MC of other seeds (`dampeml flux` with zeta),
    written to report/flux; the report's section on it. The mission is simulated again only when it is
    not complete."""
    from dampeml.physics.job import FluxRequest, run_flux
    from dampeml.physics.mission import MANIFEST, load_mission, simulate_mission

    mission_dir = workdir / "mission"
    if not (mission_dir / MANIFEST).exists():
        simulate_mission(load_mission(FLUX_MISSION).model_copy(update=FLUX_MISSION_CHANGES), mission_dir)
    mc = [simulate_file(sim_dir / "flux" / f"{p}_s{FLUX_SEED + i}.root", p, share * events, lo, hi, "mc",
                        FLUX_SEED + i, console)
          for i, (p, share, lo, hi) in enumerate(FLUX_MC)]  # fmt: skip
    request = FluxRequest(str(mission_dir / "run_*.root"), mc[0], mc[1], workdir / "report" / "flux",
                          np.geomspace(40.0, 400.0, 4), injected=mission_dir)  # fmt: skip
    path, measurement = run_flux(request)
    console.print(f"electron flux: {path}")
    table = flux_table(
        measurement.points, load_mission(mission_dir).injected_flux("electron", request.bins_gev)
    )
    return ["## Electron flux (a flight-like run of known composition)", "",
            f"`dampeml flux` with zeta and the standard energy on the flight-like run of "
            f"{FLUX_MISSION_CHANGES['live_time_s']:g} s made by `dampeml simulate-mission` (its injected "
            "electron spectrum dashed); the whole flux report, with the score distributions and the "
            "energy resolution: [flux/flux.md](flux/flux.md).", "", "![flux](flux/flux.png)", "", *table,
            ""]  # fmt: skip


def evaluate_demo(
    files: list[str],
    out: Path,
    console: Console,
    reference: Any = None,
    note: str | None = None,
    sections: Iterable[str] = (),
) -> Path:
    """The report of the demo's chain, with the shipped reference chain beside it where it was imported."""

    chain = Chain.from_registry(alias="production", flight=False)
    others = {}
    if reference is not None:  # the ChainConfig the reference models were trained for
        others["reference"] = Chain.from_registry(alias="reference", flight=False, config=reference)
    sample = collect(files, chain, others=others)
    sample.notes = [note] if note else []
    return write_report(sample, out, sections=sections)


def train_demo(workdir: Path, epochs: int | None, console: Console) -> None:
    """The chain recipe's `demo` profile: each network's small dataset built, trained, promoted
    (`epochs` for every network, else the profile's own)."""
    from dampeml.pipeline.runner import run_pipeline
    from dampeml.runtime import init_ray

    recipe = load_recipe(RECIPE, "demo", extra=None if epochs is None else {"train": {"epochs": epochs}})
    init_ray(log_to_driver=False)  # the demo prints its own summary; failures still raise here
    run_pipeline(recipe, workdir, log=lambda s: console.print(s, markup=False, highlight=False))


def current_version(name: str, alias: str):
    """The registry's VersionInfo (version, tags) behind `name@alias`, or None when there is none."""

    try:
        versions = list_versions(name)
    except RegistryError:
        return None
    return next((v for v in versions if alias in v.aliases), None)


def _complete(path: Path, n_events: int) -> bool:
    """A finished file of this many events, made with today's simulation physics."""
    try:
        info = inspect_file(path)
    except EventFileError:
        return False
    return info.n_events == n_events and info.metadata.get("simulation_version") == SIMULATION_VERSION
