"""Shower-axis fit: exact on a synthetic straight shower, NaN-safe, within mm of the truth for TeV protons."""

from __future__ import annotations

import numpy as np

from dampeml import geometry as geo
from dampeml.features.shower_axis import fit_shower_axis
from dampeml.features.tracks import truth_track
from dampeml.io.root_reader import read_events


def straight_shower(track: np.ndarray, layer_energy: np.ndarray) -> np.ndarray:
    """Energy split between the two bars around the track in each layer so that the centroid is exact."""
    n = len(track)
    f = (geo.BGO_LAYER_Z - geo.Z_TOP) / (geo.Z_BOT - geo.Z_TOP)
    x = (1 - f) * track[:, [0]] + f * track[:, [2]]
    y = (1 - f) * track[:, [1]] + f * track[:, [3]]
    u = np.where(geo.BGO_LAYER_MEASURES_X, x, y)  # (N, 14)
    c = geo.BGO_BAR_CENTRES
    k = np.clip(np.searchsorted(c, u) - 1, 0, len(c) - 2)
    w_hi = (u - c[k]) / geo.BGO_BAR_PITCH
    e = np.zeros((n, geo.BGO_N_LAYERS, geo.BGO_N_BARS))
    rows, layers = np.indices(k.shape)
    e[rows, layers, k] = layer_energy * (1 - w_hi)
    e[rows, layers, k + 1] = layer_energy * w_hi
    return e


def test_recovers_an_exact_straight_shower():
    rng = np.random.default_rng(4)
    n = 200
    # inside the BGO at its first and last layer, extrapolated to the STK planes
    z0, z1 = geo.BGO_LAYER_Z[0], geo.BGO_LAYER_Z[-1]
    u0, u1 = rng.uniform(-250, 250, (2, n, 2))
    slope = (u1 - u0) / (z1 - z0)
    track = np.column_stack([u0 + slope * (geo.Z_TOP - z0), u0 + slope * (geo.Z_BOT - z0)])
    layer_energy = rng.uniform(10, 1e4, (n, geo.BGO_N_LAYERS))
    pred, valid = fit_shower_axis(straight_shower(track, layer_energy).astype(np.float32))
    assert valid.all()
    assert np.abs(pred - track).max() < 1.0  # float32 energies: ~1e-3 mm in practice


def test_too_few_layers_give_nan_and_invalid():
    e = straight_shower(np.array([[10.0, -20.0, 5.0, 0.0]] * 3), np.full((3, 14), 100.0))
    e[1, 2:, :] = 0  # one layer per projection left
    e[2, 1::2, :] = 0  # no y layers
    e[2, 1, 4] = 50.0  # ... but one
    pred, valid = fit_shower_axis(e)
    assert valid.tolist() == [True, False, False]
    assert np.isfinite(pred[0]).all() and np.isnan(pred[1:]).all()
    pred, valid = fit_shower_axis(np.zeros((2, 14, 22)))
    assert not valid.any() and np.isnan(pred).all()


def test_tev_protons_are_within_a_few_mm(sample_files):
    ev = read_events(
        sample_files["proton"],
        branches=["bgo_energy", "true_energy", "true_x_top", "true_y_top", "true_x_bot", "true_y_bot"],
    )
    sel = ev["true_energy"] > 1000
    assert sel.sum() > 100
    pred, valid = fit_shower_axis(ev["bgo_energy"][sel])
    assert valid.mean() > 0.98
    res = np.abs(pred[valid] - truth_track(ev)[sel][valid])
    assert np.isfinite(res).all()
    bottom, top = res[:, 2:].max(axis=1), res[:, :2].max(axis=1)
    assert np.median(bottom) < 8 and np.mean(bottom < 10) > 0.6  # the BGO end of the lever arm
    assert np.median(top) < 15
