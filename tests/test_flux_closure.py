"""Closure of the flux measurement at CI size: a flight-like run of known electron and proton fluxes,
measured with electron and proton MC that no part of the run was made from, gives back the injected
electron flux in every bin within its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.physics.energy import resolution
from dampeml.physics.flux import pulls
from dampeml.physics.measure import Generation, measure_flux
from dampeml.physics.mission import Component, Mission, simulate_mission
from dampeml.physics.samples import sample_from_events, sample_from_files
from dampeml.physics.selection import FIDUCIAL, containment

ELECTRONS = Component(particle="electron", flux_at_100gev=1.8e-4, index=3.1, energy_min=20, energy_max=2000)
PROTONS = Component(particle="proton", flux_at_100gev=4.8e-2, index=2.7, energy_min=50, energy_max=5000)
BINS = np.geomspace(40.0, 400.0, 5)
CHI2_99 = {4: 13.28}  # the 99% quantile of chi2 with 4 degrees of freedom


def _mc(particle: str, n: int, lo: float, hi: float, seed: int):
    events, meta = simulate(SimulationConfig(particle, n, lo, hi, 1.0, seed=seed))
    return sample_from_events(events), [Generation(meta["n_generated"], lo, hi, 1.0)]


@pytest.mark.slow  # ~40 s: 50k flight-like events and 35k MC
@pytest.mark.timeout(600)
def test_the_measured_electron_flux_closes_on_the_injected_one(tmp_path):
    mission = Mission(name="closure", live_time_s=20000, runs=2, seed=5, detector="nominal",
                      components=[ELECTRONS, PROTONS])  # fmt: skip
    manifest = json.loads(simulate_mission(mission, tmp_path).read_text())
    flight, _ = sample_from_files([tmp_path / r["file"] for r in manifest["runs"]])
    electrons, generation = _mc("electron", 5000, 20, 2000, seed=11)  # other seeds than the mission's
    protons, _ = _mc("proton", 30000, 50, 5000, seed=12)
    points, correction = measure_flux(flight, electrons, protons, generation, mission.live_time_s, BINS)

    fiducial = containment(electrons.axis) == FIDUCIAL
    bias, width = resolution(
        correction.energy_gev(electrons.deposit_mev[fiducial]), electrons.true_energy_gev[fiducial]
    )
    print(f"\nfiducial MC electrons: corrected energy bias {bias:+.2%}, resolution {width:.2%}")
    expected = np.array(
        [ELECTRONS.integral(lo, hi) / (hi - lo) for lo, hi in zip(BINS[:-1], BINS[1:], strict=True)]
    )
    pull, chi2 = pulls(points, expected)
    for p, e, u in zip(points, expected, pull, strict=True):
        print(f"{p.e_low:5.0f}-{p.e_high:4.0f} GeV: counts {p.counts:6.1f}, efficiency {p.efficiency:.2f}, "
              f"background {p.background:.3f}, flux / injected {p.flux / e:.3f} +- {p.flux_err / e:.3f}, "
              f"pull {u:+.2f}")  # fmt: skip
    print(f"chi2 {chi2:.2f} for {len(points)} bins (99% limit {CHI2_99[len(points)]})")
    assert abs(bias) < 0.02
    assert np.all(np.abs(pull) < 3) and chi2 < CHI2_99[len(points)]
