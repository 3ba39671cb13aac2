"""The strip-level STK of simulation version 3 (detector.strips), in a test beam of one layer.

Each test prints its numbers (`pytest -s`); the limits are the published or physical expectations,
not the current outputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from dampeml import geometry as geo
from dampeml.detector.physics import landau_signal
from dampeml.detector.stk import Hits
from dampeml.detector.strips import LADDER_GAP_MM, LADDER_WIDTH_MM, digitize_strips, eta_collection

LADDER = 2  # the beam crosses the third ladder of layer 0


def _beam(n: int, angle_deg: float, seed: int, charge: int = 1, pos: np.ndarray | None = None):
    rng = np.random.default_rng(seed)
    slope = np.tan(np.radians(angle_deg))
    if pos is None:
        pos = -geo.STK_HALF_WIDTH + LADDER * LADDER_WIDTH_MM + rng.uniform(5.0, LADDER_WIDTH_MM - 5.0, n)
    sig = landau_signal(rng, np.full(n, float(charge**2)), np.full(n, np.sqrt(1 + slope**2)))
    hits = Hits(
        np.arange(n),
        np.zeros(n, dtype=int),
        pos,
        np.full(n, 10.0),
        sig,
        np.ones(n, dtype=bool),
        np.full(n, slope),
    )
    return digitize_strips(rng, hits), pos


def _nearest_residual(clusters: dict, pos: np.ndarray) -> np.ndarray:
    """Per crossing, the residual of its nearest cluster (NaN if none within 1 mm)."""
    res = np.full(len(pos), np.nan)
    ev = clusters["event"]
    d = clusters["pos"].astype(np.float64) - pos[ev]
    order = np.lexsort((np.abs(d), ev))  # per crossing, nearest first
    first = np.ones(len(order), dtype=bool)
    first[1:] = ev[order][1:] != ev[order][:-1]
    res[ev[order][first]] = d[order][first]
    return np.where(np.abs(res) < 1.0, res, np.nan)


def test_resolution_width_and_efficiency_against_angle():
    """Near normal incidence the position resolution is DAMPE's 40-50 um (68% of |residual|: 35-50),
    it improves where the charge starts to share between strips and worsens again at large angles;
    clusters widen with the angle; a MIP is found in > 99% of crossings."""
    out = {}
    for angle in (0, 15, 50):
        clusters, pos = _beam(8000, angle, seed=angle)
        res = _nearest_residual(clusters, pos)
        found = np.isfinite(res)
        width = clusters["width"].mean()
        out[angle] = (np.percentile(np.abs(res[found]), 68) * 1e3, width, found.mean())
        print(f"\n{angle:2d} deg: 68% |residual| {out[angle][0]:.0f} um, ", end="")
        print(f"width {width:.2f} strips, found {found.mean():.4f}")
    assert 35.0 < out[0][0] < 50.0
    assert out[15][0] < out[0][0] and out[50][0] > out[15][0]
    assert out[0][1] < out[15][1] < out[50][1]
    assert min(v[2] for v in out.values()) > 0.99


def test_the_eta_correction_flattens_the_signal_between_strips():
    """At normal incidence the raw signal of a proton crossing between two readout strips (eta ~0.5)
    is about half that of one on a strip (eta ~1); the stored, eta-corrected signal is within 10%."""
    clusters, _ = _beam(20000, 0, seed=5)
    eta, raw, corrected = clusters["eta"], clusters["raw_signal"], clusters["signal"]
    between, on = (eta < 0.55), (eta > 0.97)
    r_raw = np.median(raw[between]) / np.median(raw[on])
    r_cor = np.median(corrected[between]) / np.median(corrected[on])
    print(f"\nbetween / on a readout strip: raw {r_raw:.2f}, corrected {r_cor:.2f} ", end="")
    print(f"(the model's collection at eta 0.5: {eta_collection(0.5):.2f})")
    assert 0.4 < r_raw < 0.65
    assert 0.9 < r_cor < 1.1


def test_a_ladder_gap_has_no_silicon_and_helium_signals_are_four_times_protons():
    """Crossings at normal incidence in the middle of the gap between two ladders leave no cluster;
    helium's clusters carry ~4x the protons' signal."""
    edge = -geo.STK_HALF_WIDTH + LADDER * LADDER_WIDTH_MM
    in_gap = edge + np.random.default_rng(1).uniform(-0.4, 0.4, 500) * LADDER_GAP_MM
    clusters, _ = _beam(500, 0, seed=2, pos=in_gap)
    print(f"\nclusters from 500 crossings inside the gap: {len(clusters['pos'])}")
    assert len(clusters["pos"]) == 0
    p, _ = _beam(5000, 20, seed=3, charge=1)
    he, _ = _beam(5000, 20, seed=3, charge=2)
    ratio = np.median(he["signal"]) / np.median(p["signal"])
    print(f"helium / proton median cluster signal {ratio:.2f} (charge squared: 4)")
    assert 3.6 < ratio < 4.4


def test_the_crosstalk_study_moves_a_share_of_each_channels_charge_to_its_readout_neighbours(monkeypatch):
    """strips.READOUT_CROSSTALK (a study, off in every version): each readout neighbour takes the share x
    of a channel's charge from it, so the charge is kept; a MIP on a readout strip then reads x on both
    sides, and single-strip clusters become rarer, far more so for helium, whose neighbours read 4x."""
    from dampeml.detector import strips

    centre = -geo.STK_HALF_WIDTH + LADDER * LADDER_WIDTH_MM + 100.5 * geo.STK_READOUT_PITCH
    one = Hits(*(np.array([v]) for v in (0, 0, centre, 10.0, 1.0, True, 0.0)))
    idx, channel, charge = strips.readout_charges(one, np.random.default_rng(0))
    (c,) = set(channel.tolist())  # all on one readout strip
    assert charge.sum() == pytest.approx(1.0)
    x = 0.05
    monkeypatch.setattr(strips, "READOUT_CROSSTALK", x)
    idx, channel, charge = strips.readout_charges(one, np.random.default_rng(0))
    per = {int(ch): float(charge[channel == ch].sum()) for ch in np.unique(channel)}
    print(f"\na MIP on readout strip {c} with cross-talk {x}: {per}")
    assert per == pytest.approx({c - 1: x, c: 1 - 2 * x, c + 1: x})
    single = {}
    for charge_z in (1, 2):
        monkeypatch.setattr(strips, "READOUT_CROSSTALK", 0.0)
        off = np.mean(_beam(6000, 0, seed=3, charge=charge_z)[0]["width"] == 1)
        monkeypatch.setattr(strips, "READOUT_CROSSTALK", x)
        on = np.mean(_beam(6000, 0, seed=3, charge=charge_z)[0]["width"] == 1)
        single[charge_z] = (off, on)
        print(f"Z = {charge_z}: single-strip clusters at normal incidence {off:.3f} -> {on:.3f}")
    assert single[1][1] < 0.7 * single[1][0] and single[2][1] < 0.1 * single[2][0]
