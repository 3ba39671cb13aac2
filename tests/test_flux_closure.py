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
CHI2_99 = {4: 13.28}  # the 99% quantile of chi2 with 4 degrees of freedom


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
    }  # fmt: skip
    chi2 = {}
    for name, m in runs.items():
        pull, chi2[name] = pulls(m.points, expected)
        shifts = ", ".join(f"{b.proton_shift:+.2f}" for b in m.bins)
        print(f"\n{name} template (shift {shifts}): background "
              f"{', '.join(f'{p.background:.2f}' for p in m.points)}; flux / injected "
              f"{', '.join(f'{p.flux / e:.2f}' for p, e in zip(m.points, expected, strict=True))}; "
              f"pulls {np.round(pull, 2).tolist()}; chi2 {chi2[name]:.1f}")  # fmt: skip
        if name == "fitted":
            assert np.all(np.abs(pull) < 3) and chi2[name] < CHI2_99[len(pull)]
            assert all(abs(b.proton_shift) < 0.15 for b in m.bins), "the fit should undo the shift"
    assert chi2["mis-modelled"] > CHI2_99[len(BINS) - 1], "a shifted template should bias the flux"


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
