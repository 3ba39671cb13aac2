"""Alignment by transfer learning on flight-like data (paper, section 4; issue #7).

A small BGO direction network is trained on MC, then only its Dense(4) alignment head is
trained, backbone frozen, on a flight-like run whose BGO is shifted and tilted relative to
the STK (the simulation's per-run misalignment, read here only to check the answer). The
targets are STK tracks of the standard reconstruction on clean single-track events: no
truth is used by the alignment itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.geometry import BGO_Z_TOP, Z_TOP
from dampeml.training.alignment import (
    AlignmentError,
    align,
    bgo_inputs,
    held_out,
    residual_figures,
    select_clean_tracks,
    train_head,
)

FLIGHT_SEED = 7  # its drawn misalignment: see the test output


def _mc(particle: str, n: int, seed: int) -> dict:
    branches, _ = simulate(SimulationConfig(particle, n, 1000.0, 1e5, seed=seed))
    return branches


@pytest.fixture(scope="module")
def base_model(trained_bgo_mid):
    """The small mid-range BGO network trained on MC p/He (shared with the physics test)."""
    return trained_bgo_mid[0]


@pytest.fixture(scope="module")
def flight():
    branches, metadata = simulate(
        SimulationConfig("proton", 8000, 1000.0, 1e5, mode="flight", seed=FLIGHT_SEED)
    )
    assert not any(k.startswith("true_") for k in branches)  # flight-like: no truth to lean on
    return branches, metadata["simulation_only_flight_conditions"]


def _offsets(model, events) -> tuple[dict[str, float], int]:
    """BGO prediction minus the STK track of clean events (all of them: no fit here), and their count."""
    clean, track = select_clean_tracks(events)
    figures = residual_figures(
        model.predict(bgo_inputs(events)[clean], verbose=0, batch_size=1024), track[clean]
    )
    return figures, int(clean.sum())


def _median_error(figures: dict[str, float], n: int) -> float:
    """Standard error of a per-coordinate median offset: 1.2533 sigma / sqrt(n), with sigma from the
    68% radius (r68 = 1.515 sigma for a 2D Gaussian)."""
    return 1.2533 * figures["residual68_mm"] / 1.515 / np.sqrt(n)


@pytest.mark.timeout(600)
def test_alignment_head_removes_the_injected_misalignment(base_model, flight):
    events, cond = flight
    dx, dy = cond["bgo_offset_mm"]
    tx, ty = cond["bgo_tilt_rad"]
    # the BGO frame is shifted by (dx, dy) and tilted: the network's line, extrapolated from the
    # BGO top up to the first STK plane, lands at -offset + tilt x that distance
    lever = BGO_Z_TOP - Z_TOP
    expected = (-dx + tx * lever, -dy + ty * lever)
    mc, n_mc = _offsets(base_model, simulate(SimulationConfig("proton", 8000, 1000.0, 1e5, seed=8))[0])
    result = align(base_model, events, epochs=15)
    b, a = result.before, result.after
    seen = (b["median_dx_top_mm"] - mc["median_dx_top_mm"], b["median_dy_top_mm"] - mc["median_dy_top_mm"])
    # statistics of the two medians (held-out flight events, clean MC events): 3 standard errors.
    # (It was a fixed 0.5 mm: a number of no physical meaning, since the error of a median shrinks
    # as 1/sqrt(n) of the clean events; after the base network was retrained the offset sat 0.66 mm
    # from the injected one with 3 se = 0.81 mm, i.e. within the statistics of this sample. The
    # second assert keeps the bound meaningful: it must be smaller than the shift it resolves.)
    tol = 3 * np.hypot(_median_error(b, result.n_held_out), _median_error(mc, n_mc))
    print(
        f"\ninjected: BGO offset ({dx:+.2f}, {dy:+.2f}) mm, tilt ({tx:+.1e}, {ty:+.1e}) rad -> expected "
        f"shift at the first STK plane ({expected[0]:+.2f}, {expected[1]:+.2f}) mm"
        f"\nflight minus MC median BGO-STK offset, before alignment: ({seen[0]:+.2f}, {seen[1]:+.2f}) mm "
        f"(tolerance {tol:.2f} mm: 3 standard errors of the two medians)"
        f"\nheld-out median offset: before ({b['median_dx_top_mm']:+.2f}, {b['median_dy_top_mm']:+.2f}), "
        f"after ({a['median_dx_top_mm']:+.2f}, {a['median_dy_top_mm']:+.2f}) mm; "
        f"{result.n_fit} clean events fitted, {result.n_held_out} held out"
        f"\nheld-out residual 68%: {b['residual68_mm']:.2f} -> {a['residual68_mm']:.2f} mm; "
        f"head bias {np.round(result.head_bias_mm, 2)} mm; head fit {result.seconds:.1f} s"
    )
    # the network sees the injected misalignment (beyond its own bias, measured on MC)...
    assert abs(seen[0] - expected[0]) < tol and abs(seen[1] - expected[1]) < tol
    assert tol < np.hypot(*expected), "too few clean events to tell the injected shift from none"
    # ...and the head removes it on events it was not fitted on: what is left is consistent with
    # no offset (the length of two medians, each with error se: below 3.03 se in 99% of runs)
    left = 3.03 * _median_error(a, result.n_held_out)
    print(f"offset left {a['offset_mm']:.2f} mm, consistent with none below {left:.2f} mm")
    assert a["offset_mm"] < left and a["offset_mm"] < 0.35 * b["offset_mm"]
    assert a["residual68_mm"] <= b["residual68_mm"]
    # the backbone stayed frozen: only the head's 20 parameters moved
    assert sum(int(np.prod(w.shape)) for w in result.model.trainable_weights) == 20


@pytest.mark.timeout(600)
def test_head_trained_in_one_energy_range_works_in_another(base_model, flight):
    events, _ = flight
    clean, track = select_clean_tracks(events)
    deposit = events["bgo_energy"].sum(axis=(1, 2))
    split = np.median(deposit[clean])
    out = held_out(events["run_id"], events["event_id"])
    fit = np.flatnonzero(clean & ~out & (deposit < split))
    test = np.flatnonzero(clean & out & (deposit >= split))
    x = bgo_inputs(events)
    before = residual_figures(base_model.predict(x[test], verbose=0), track[test])
    model, _, _ = train_head(base_model, x[fit], track[fit], epochs=15)
    after = residual_figures(model.predict(x[test], verbose=0), track[test])
    print(
        f"\nhead fitted on {len(fit)} events below {split / 1e3:.0f} GeV deposited, tested on "
        f"{len(test)} above: offset {before['offset_mm']:.2f} -> {after['offset_mm']:.2f} mm, "
        f"residual 68% {before['residual68_mm']:.2f} -> {after['residual68_mm']:.2f} mm"
    )
    # the network's own bias differs a little between ranges: most, not all, of the offset goes
    assert after["offset_mm"] < 0.5 * before["offset_mm"]


@pytest.mark.slow  # its fixture trains a BGO network (~2 min)
def test_alignment_refuses_mc_and_too_few_events(base_model):
    mc = _mc("proton", 50, 5)
    with pytest.raises(AlignmentError, match="truth"):
        align(base_model, mc)
    flight, _ = simulate(SimulationConfig("proton", 60, 1000.0, 1e5, mode="flight", seed=3))
    with pytest.raises(AlignmentError, match="clean single-track events"):
        align(base_model, flight)
