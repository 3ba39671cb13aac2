"""Closure of the flux measurement at CI size: a flight-like run of known electron and proton fluxes,
measured with electron and proton MC that no part of the run was made from, gives back the injected
electron flux in every bin within its errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from dampeml.cli.main import app
from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.io.root_writer import write_event_file
from dampeml.physics.energy import resolution
from dampeml.physics.flux import pulls
from dampeml.physics.measure import measure_flux
from dampeml.physics.mission import Component, Mission, simulate_mission
from dampeml.physics.samples import sample_from_files
from dampeml.physics.selection import FIDUCIAL, containment

ELECTRONS = Component(particle="electron", flux_at_100gev=1.8e-4, index=3.1, energy_min=20, energy_max=2000)
PROTONS = Component(particle="proton", flux_at_100gev=4.8e-2, index=2.7, energy_min=50, energy_max=5000)
BINS = np.geomspace(40.0, 400.0, 5)
CHI2_99 = {4: 13.28}
REPO = Path(__file__).resolve().parents[1]  # the 99% quantile of chi2 with 4 degrees of freedom


def _mc_file(path: Path, particle: str, n: int, lo: float, hi: float, seed: int) -> Path:
    events, meta = simulate(SimulationConfig(particle, n, lo, hi, 1.0, seed=seed))
    return write_event_file(path, events, meta)


@pytest.fixture(scope="module")
def closure(tmp_path_factory):
    """A nominal-detector run of known fluxes, and electron and proton MC made with other seeds."""
    root = tmp_path_factory.mktemp("closure")
    mission = Mission(name="closure", live_time_s=20000, runs=2, seed=5, detector="nominal",
                      components=[ELECTRONS, PROTONS])  # fmt: skip
    manifest = json.loads(simulate_mission(mission, root / "mission").read_text())
    flight = [root / "mission" / r["file"] for r in manifest["runs"]]
    electrons = _mc_file(root / "e.root", "electron", 5000, 20, 2000, seed=11)
    protons = _mc_file(root / "p.root", "proton", 30000, 50, 5000, seed=12)
    return root, mission, flight, electrons, protons


def _expected() -> np.ndarray:
    return np.array(
        [ELECTRONS.integral(lo, hi) / (hi - lo) for lo, hi in zip(BINS[:-1], BINS[1:], strict=True)]
    )


@pytest.mark.slow  # ~40 s: 50k flight-like events and 35k MC
@pytest.mark.timeout(600)
def test_the_measured_electron_flux_closes_on_the_injected_one(closure):
    _, mission, flight_files, e_file, p_file = closure
    flight, _, live = sample_from_files(flight_files)
    electrons, generation, _ = sample_from_files([e_file])
    protons, _, _ = sample_from_files([p_file])
    assert live == pytest.approx(mission.live_time_s)
    measurement = measure_flux(flight, electrons, protons, generation, live, BINS)
    points, correction = measurement.points, measurement.correction

    fiducial = containment(electrons.axis) == FIDUCIAL
    bias, width = resolution(
        correction.energy_gev(electrons.deposit_mev[fiducial]), electrons.true_energy_gev[fiducial]
    )
    # what the report draws is what the points were made of
    assert [b.cut for b in measurement.bins] == [p.cut for p in points]
    assert len(measurement.electron_true_gev) == fiducial.sum()
    print(f"\nfiducial MC electrons: corrected energy bias {bias:+.2%}, resolution {width:.2%}")
    expected = _expected()
    pull, chi2 = pulls(points, expected)
    for p, e, u in zip(points, expected, pull, strict=True):
        print(f"{p.e_low:5.0f}-{p.e_high:4.0f} GeV: counts {p.counts:6.1f}, efficiency {p.efficiency:.2f}, "
              f"background {p.background:.3f}, flux / injected {p.flux / e:.3f} +- {p.flux_err / e:.3f}, "
              f"pull {u:+.2f}")  # fmt: skip
    print(f"chi2 {chi2:.2f} for {len(points)} bins (99% limit {CHI2_99[len(points)]})")
    assert abs(bias) < 0.02
    assert np.all(np.abs(pull) < 3) and chi2 < CHI2_99[len(points)]


#: a deliberately mis-modelled proton template: its scores (-log10 zeta) shifted this much towards the
#: electrons', as if the simulated proton showers were 100x lower in zeta than the flight's
MISMODELLED_SHIFT = 2.0


@pytest.mark.slow  # shares the closure's inputs
@pytest.mark.timeout(600)
def test_a_mismodelled_proton_template_biases_the_flux_and_the_template_fit_removes_it(closure):
    """The seed had to shift its proton template to match the data. Shifted here by hand, the template
    puts too many protons above the cut: the flux falls below the injected one, far outside its errors.
    Fitted to the flight data per bin (the proton MC's median score onto the flight's, which protons
    dominate), the shift is found again and the closure comes back."""
    _, _, flight_files, e_file, p_file = closure
    flight, _, live = sample_from_files(flight_files)
    electrons, generation, _ = sample_from_files([e_file])
    protons, _, _ = sample_from_files([p_file])
    expected = _expected()
    runs = {
        "mis-modelled": measure_flux(flight, electrons, protons, generation, live, BINS,
                                     proton_shift=MISMODELLED_SHIFT),
        "fitted": measure_flux(flight, electrons, protons, generation, live, BINS,
                               proton_shift=MISMODELLED_SHIFT, fit_proton_shift=True),
        "as simulated, fitted": measure_flux(flight, electrons, protons, generation, live, BINS,
                                             fit_proton_shift=True),
    }  # fmt: skip
    chi2 = {}
    for name, m in runs.items():
        pull, chi2[name] = pulls(m.points, expected)
        shifts = ", ".join(f"{b.proton_shift:+.2f} +- {b.proton_shift_err:.2f}" for b in m.bins)
        print(f"\n{name} template (shift {shifts}): background "
              f"{', '.join(f'{p.background:.2f}' for p in m.points)}; flux / injected "
              f"{', '.join(f'{p.flux / e:.2f}' for p, e in zip(m.points, expected, strict=True))}; "
              f"pulls {np.round(pull, 2).tolist()}; chi2 {chi2[name]:.1f}")  # fmt: skip
        if name == "fitted":
            assert np.all(np.abs(pull) < 3) and chi2[name] < CHI2_99[len(pull)]
            assert all(abs(b.proton_shift) < MISMODELLED_SHIFT / 8 for b in m.bins), (
                "the fit should undo the shift"
            )
    assert chi2["mis-modelled"] > CHI2_99[len(BINS) - 1], "a shifted template should bias the flux"
    # what the fit leaves (0.02-0.19 in -log10 zeta) is the templates' own difference, found as well
    # without the mis-modelling: the proton MC is E^-1 within a bin of deposit, the flight's E^-2.7
    for fitted, plain in zip(runs["fitted"].bins, runs["as simulated, fitted"].bins, strict=True):
        assert abs(fitted.proton_shift - plain.proton_shift) < 3 * max(plain.proton_shift_err, 0.01)


@pytest.mark.slow  # shares the closure's inputs
@pytest.mark.timeout(600)
def test_flux_command_writes_the_table_and_refuses_bad_bins(closure):
    root, _, flight_files, e_file, p_file = closure
    out = root / "flux"
    args = ["flux", "--flight", str(root / "mission" / "run_*.root"), "--electron-mc", str(e_file),
            "--proton-mc", str(p_file), "--out", str(out), "--bins", "40:400:4"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((out / "flux.csv").open()))
    assert len(rows) == 4 and (out / "flux.png").stat().st_size > 5000 and (out / "flux.config.yaml").exists()
    assert (out / "scores.png").stat().st_size > 5000 and (out / "energy.png").stat().st_size > 5000
    report = (out / "flux.md").read_text()
    energy = report.split("## Energy")[1].splitlines()
    assert "## Score distributions" in report and sum(line[2:3].isdigit() for line in energy) == 4
    pull, _ = pulls(
        [SimpleNamespace(flux=float(x["flux"]), flux_err=float(x["flux_err"])) for x in rows], _expected()
    )
    assert np.all(np.abs(pull) < 3)
    fitted = CliRunner().invoke(
        app, [*args[:-4], "--out", str(root / "flux-fit"), *args[-2:], "--fit-proton-template"]
    )
    assert fitted.exit_code == 0, fitted.output
    assert "shifted to the flight per bin: " in (root / "flux-fit" / "flux.md").read_text()
    r = CliRunner().invoke(app, [*args[:-2], "--bins", "400:40:4"])
    assert r.exit_code == 2 and "edges must be positive and increasing" in " ".join(r.output.split())
    r = CliRunner().invoke(app, [*args[:-2], "--selection", "everything"])
    assert r.exit_code == 2 and "fiducial or non-fiducial" in " ".join(r.output.split())


@pytest.fixture(scope="module")
def flux_networks(tmp_path_factory):
    """The electron-flux recipe's demo profile trained on a private registry (its models @production)."""
    import ray

    from dampeml.pipeline.recipe import load_recipe
    from dampeml.pipeline.runner import run_pipeline
    from dampeml.registry.bootstrap import ensure_experiment
    from dampeml.runtime import init_ray

    root = tmp_path_factory.mktemp("flux-networks")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    ensure_experiment(root / "artifacts")
    init_ray(num_cpus=3)
    try:
        results = run_pipeline(load_recipe(REPO / "recipes" / "electron-flux.yaml", "demo"), root / "work")
    finally:
        ray.shutdown()
    yield results
    mp.undo()


@pytest.mark.slow  # ~3 min: four networks trained, then run on the closure's 85k events
@pytest.mark.timeout(1500)
def test_the_flux_networks_train_through_the_platform_and_the_flux_closes_with_them(closure, flux_networks):
    """The recipe trains the three classifiers and the energy network; side by side on the closure's MC
    the energy network resolves electrons as well as the standard estimate, and the flux
    measured with the combined score and the network energy closes on the injected one."""
    root, _, _, e_file, p_file = closure
    assert {r.status for r in flux_networks.values()} == {"trained"} and len(flux_networks) == 4
    out = root / "compare"
    r = CliRunner().invoke(app, ["flux-compare", "--electron-mc", str(e_file), "--proton-mc", str(p_file),
                                 "--out", str(out), "--bins", "40:400:3"])  # fmt: skip
    assert r.exit_code == 0, r.output
    result = json.loads((out / "compare.json").read_text())
    for row in result["scores"]:
        print(f"{row['e_low']:.0f}-{row['e_high']:.0f} GeV {row['score']}: AUC {row['auc']:.5f}, "
              f"rejection at 90% {row['rejection']}")  # fmt: skip
    # every classifier learned (0.5 untrained). Since version 4's hadron showers the image branch alone,
    # trained on 3,000 events, reaches 0.980-0.988 per bin (two runs; every score passed 0.99 on v3): the
    # shower variables carry the rest, so the others keep 0.99
    for row in result["scores"]:
        assert row["auc"] > (0.95 if row["score"] == "electron-proton-cnn" else 0.99), row
    widths = {(row["containment"], row["e_low"], row["estimate"]): (row["resolution"], row["n"])
              for row in result["energies"]}  # fmt: skip
    for (cls, e_low, estimate), (width, n) in widths.items():
        if estimate == "bgo-energy":
            standard = widths[(cls, e_low, "standard")][0]
            print(f"{cls} {e_low:.0f} GeV, {n} electrons: resolution standard {standard:.2%}, ", end="")
            print(f"network {width:.2%}")
            # about as good as the standard estimate: within 10% of it and twice a resolution's relative
            # error, 1/sqrt(2n). The standard correction resolves fiducial electrons to ~0.7%; on version 3
            # this demo-sized network matched it within the errors, on version 4 (showers that fluctuate
            # in depth) it lands 0-8% above it for fiducial electrons (two runs)
            assert width < 1.1 * standard * (1 + 2 / np.sqrt(2 * n))
    flux_out = root / "flux-networks"
    args = ["flux", "--flight", str(root / "mission" / "run_*.root"), "--electron-mc", str(e_file),
            "--proton-mc", str(p_file), "--out", str(flux_out), "--bins", "40:400:4",
            "--score", "combined", "--energy", "bgo-energy"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((flux_out / "flux.csv").open()))
    pull, chi2 = pulls([SimpleNamespace(flux=float(x["flux"]), flux_err=float(x["flux_err"])) for x in rows],
                       _expected())  # fmt: skip
    print(f"flux with the combined score and the network energy: pulls {np.round(pull, 2).tolist()}, "
          f"chi2 {chi2:.2f} (99% limit {CHI2_99[len(rows)]})")  # fmt: skip
    assert np.all(np.abs(pull) < 3) and chi2 < CHI2_99[len(rows)]
    assert "- energy: bgo-energy" in (flux_out / "flux.md").read_text()


@pytest.mark.slow  # ~20 s: the main job's flight-like run (31k events) and its MC
@pytest.mark.timeout(600)
def test_the_main_jobs_flux_stage_writes_its_report_section(tmp_path):
    """The demo's stage 7: the flux of a run of known composition, against its injected spectrum."""
    from rich.console import Console

    from dampeml.pipeline.demo import flux_demo

    section = flux_demo(tmp_path, tmp_path / "simulation", 1000, Console(quiet=True))
    rows = [line for line in "\n".join(section).splitlines() if line.startswith("| ") and line[2].isdigit()]
    pull = np.array([float(row.split("|")[-2]) for row in rows])
    print("\n".join(section))
    assert section[0].startswith("## Electron flux") and len(rows) == 3
    assert np.all(np.abs(pull) < 3), "the demo's flux should close on its injected spectrum"
    again = flux_demo(tmp_path, tmp_path / "simulation", 1000, Console(quiet=True))  # a rerun reuses the run
    assert again == section and (tmp_path / "report" / "flux" / "flux.png").exists()
