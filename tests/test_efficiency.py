"""The paper's Table 2 efficiency metric on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.evaluation.efficiency import (
    PAPER_ENERGY_BINS,
    containment_window,
    efficiency_table,
    format_table,
    in_window,
    paper_value,
    table2_masks,
)
from dampeml.features.tracks import truth_track
from dampeml.reconstruction.hits import track_charge
from dampeml.reconstruction.standard import reconstruct, select_ideal


@pytest.fixture(scope="module")
def events() -> dict:
    ev = {}
    for particle, seed in (("proton", 41), ("helium", 42)):
        b, _ = simulate(SimulationConfig(particle, 600, 56.2, 1000.0, seed=seed))
        ev[particle] = b
    return ev


def test_containment_window_of_a_gaussian():
    x = np.random.default_rng(0).normal(1.0, 0.1, 200_000)
    for frac, z in ((0.85, 1.4395), (0.95, 1.96)):
        lo, hi = containment_window(x, frac)
        print(f"\n{frac:.0%}: [{lo:.4f}, {hi:.4f}], expected 1 -+ {z * 0.1:.4f}")
        assert abs(lo - (1 - z * 0.1)) < 0.003 and abs(hi - (1 + z * 0.1)) < 0.003
    assert np.isnan(containment_window(np.array([np.nan]), 0.85)[0])
    with pytest.raises(ValueError, match="containment"):
        containment_window(x, 1.5)


def test_containment_window_worked_out_by_hand():
    # 60% of 5 charges = 3 of them: [1, 3] and [2, 4] are 2 wide, [3, 10] is 7; the first shortest
    q = np.array([10.0, 2.0, np.nan, 4.0, 1.0, 3.0])  # unsorted, a NaN (no track) ignored
    assert containment_window(q, 0.6) == (1.0, 3.0)
    assert containment_window(q, 1.0) == (1.0, 10.0)
    assert containment_window(q, 0.01) == (1.0, 1.0)  # at least one charge
    assert in_window(q, (1.0, 3.0)).tolist() == [False, True, False, False, True, True]  # ends included


def test_true_track_is_fully_efficient_and_a_shifted_track_is_not(events):
    """On events whose primary reaches the BGO intact. (After an interaction in the tracker, secondaries
    a few mm from the primary give a shifted track a charge in the window in ~5% of 0.1-1 TeV protons.)"""
    rows = []
    for particle, ev in events.items():
        clean = ~np.asarray(ev["true_inelastic"])
        truth = truth_track(ev)
        shifted = truth + np.array([5.0, 5.0, 5.0, 5.0])
        rows += efficiency_table(
            particle,
            ev["true_energy"],
            track_charge(ev, truth),
            {
                "true": track_charge(ev, truth),
                "shifted 5 mm": track_charge(ev, shifted),
                "none": np.full(len(truth), np.nan),
            },
            energy_bins=[(56.2, 100.0), (100.0, 1000.0)],
            mask=clean,
        )
    print("\n" + format_table(rows, paper=False))
    for r in rows:
        assert r["n_true"] > 0.8 * r["containment"] * r["n_events"]
        if r["method"] == "true":
            assert r["efficiency"] == 1.0
        elif r["method"] == "shifted 5 mm":
            assert r["efficiency"] < 0.05
        else:
            assert r["efficiency"] == 0.0


def test_table_rows_and_input_checks(events):
    ev = events["proton"]
    q = track_charge(ev, truth_track(ev))
    rows = efficiency_table("proton", ev["true_energy"], q, {"m": q})
    assert len(rows) == len(PAPER_ENERGY_BINS) * 2
    assert {"particle", "e_min", "e_max", "containment", "method", "efficiency", "n_true"} <= set(rows[0])
    assert paper_value("proton", "standard", 56.2, 100.0, 0.85) == 75.4
    assert paper_value("helium", "ideal", 562340.0, 1e6, 0.95) == 56.1
    with pytest.raises(ValueError, match="one per event"):
        efficiency_table("proton", ev["true_energy"], q, {"m": q[:-1]})


def test_peak_mask_keeps_the_window_on_the_peak():
    """A 10% tail of interacting events stretches a 95% window over all events; the clean peak's does not."""
    rng = np.random.default_rng(1)
    n = 20_000
    tail = rng.random(n) < 0.1
    q = np.where(tail, rng.uniform(1.5, 3.0, n), rng.normal(1.0, 0.03, n))
    rows_all = efficiency_table("proton", np.full(n, 80.0), q, {"true": q}, containments=[0.95])
    rows_peak = efficiency_table(
        "proton", np.full(n, 80.0), q, {"true": q}, containments=[0.95], peak_mask=~tail
    )
    hi_all = [r for r in rows_all if r["n_events"]][0]["window_hi"]
    hi_peak = [r for r in rows_peak if r["n_events"]][0]["window_hi"]
    print(f"\n95% window upper edge: all events {hi_all:.2f}, clean peak {hi_peak:.3f}")
    assert hi_all > 1.5
    assert abs(hi_peak - (1.0 + 1.96 * 0.03)) < 0.01


def test_standard_reconstruction_collapses_towards_pev_as_in_table_2():
    """End to end on protons: the standard selection loses the track near 1 PeV, the ideal one less."""
    eff = {}
    for lo, hi, seed in ((56.2, 100.0, 43), (562340.0, 1e6, 44)):
        ev, _ = simulate(SimulationConfig("proton", 500, lo, hi, seed=seed))
        truth = truth_track(ev)
        res = reconstruct(ev)
        counted, peak = table2_masks(ev["true_inelastic"], ev["true_interaction_z"])
        charges = {
            "standard": track_charge(ev, res.track),
            "ideal": track_charge(ev, select_ideal(res.candidates, truth)),
        }
        rows = efficiency_table(
            "proton",
            ev["true_energy"],
            track_charge(ev, truth),
            charges,
            energy_bins=[(lo, hi)],
            containments=[0.85],
            mask=counted,
            peak_mask=peak,
        )
        eff[lo] = {r["method"]: r["efficiency"] for r in rows}
        paper = {m: paper_value("proton", m, lo, hi, 0.85) for m in charges}
        print(f"\nprotons {lo / 1e3:g}-{hi / 1e3:g} TeV, 85% window: {eff[lo]} (paper, %: {paper})")
    low, high = eff[56.2], eff[562340.0]
    assert low["ideal"] > 0.95 and low["standard"] > 0.7
    assert high["standard"] < low["standard"] - 0.25, (
        "backsplash must spoil the standard selection near 1 PeV"
    )
    assert high["ideal"] > high["standard"] + 0.2
