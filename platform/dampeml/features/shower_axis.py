"""The standard BGO direction: an energy-weighted straight-line fit of the shower axis (baseline).

Per projection (even layers measure x, odd ones y), each layer gives a point: the
energy-weighted centroid of its hottest bar and the AXIS_HALF_WIDTH = 2 bars on each
side (5 bars, 137.5 mm: the shower core, without the far halo and isolated hits that
pull a full-layer centroid), weighted by that window's energy. A weighted least-squares
line u = a + b z through the 7 points is extrapolated to the STK reference planes,
giving the same (x_top, y_top, x_bot, y_bot) as the networks, so the two compare
directly. Needs at least 2 layers with energy in each projection; otherwise the row
is NaN and `valid` is False.
"""

from __future__ import annotations

import numpy as np

from dampeml import geometry as geo

AXIS_HALF_WIDTH = 2  # bars on each side of the layer's hottest bar
#: A layer with more than this many MIPs is no longer a lone ionising track: the shower
#: has started. 10 MIP is above the MIP deposit of protons (1-2 MIP at the accepted
#: angles) and of helium (4-8 MIP) and far below any developing shower's layer energy.
SHOWER_START_MIP = 10.0
#: A layer also needs this share of the event's deposit to count as the shower start, so
#: that a few-MIP fluctuation ahead of a TeV shower does not count.
SHOWER_START_FRACTION = 0.01


def layer_centroids(
    bgo_energy: np.ndarray, half_width: int = AXIS_HALF_WIDTH
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 14) centroid (mm) of the hottest bar +- half_width and (N, 14) energy in that window."""
    e = np.asarray(bgo_energy, dtype=np.float64)
    e = np.where(np.isfinite(e) & (e > 0), e, 0.0)
    hottest = e.argmax(axis=2)
    bars = np.arange(geo.BGO_N_BARS)
    window = np.abs(bars[None, None, :] - hottest[..., None]) <= half_width
    ew = e * window
    w = ew.sum(axis=2)
    centroid = np.divide(ew @ geo.BGO_BAR_CENTRES, w, out=np.zeros_like(w), where=w > 0)
    return centroid, w


def _weighted_line(z: np.ndarray, u: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted least squares u = a + b (z - z_mean) per event: (z_mean, a, b), NaN if underdetermined."""
    s = w.sum(axis=1)
    ok = (w > 0).sum(axis=1) >= 2
    s_safe = np.where(ok, s, 1.0)
    z_mean = (w * z).sum(axis=1) / s_safe
    a = (w * u).sum(axis=1) / s_safe
    dz = z - z_mean[:, None]
    szz = (w * dz * dz).sum(axis=1)
    b = (w * dz * u).sum(axis=1) / np.where(ok, szz, 1.0)
    nan = np.where(ok, 0.0, np.nan)
    return z_mean + nan, a + nan, b + nan


def fit_shower_axis(
    bgo_energy: np.ndarray, half_width: int = AXIS_HALF_WIDTH
) -> tuple[np.ndarray, np.ndarray]:
    """(N, 14, 22) bar energies -> ((N, 4) track at the STK planes, (N,) valid); invalid rows are NaN."""
    centroid, w = layer_centroids(bgo_energy, half_width)
    out = np.empty((len(centroid), 4))
    for col, rows in ((0, geo.BGO_LAYER_MEASURES_X), (1, ~geo.BGO_LAYER_MEASURES_X)):
        z_mean, a, b = _weighted_line(geo.BGO_LAYER_Z[rows][None, :], centroid[:, rows], w[:, rows])
        out[:, col] = a + b * (geo.Z_TOP - z_mean)
        out[:, col + 2] = a + b * (geo.Z_BOT - z_mean)
    valid = np.isfinite(out).all(axis=1)
    out[~valid] = np.nan
    return out, valid


def shower_start_layer(
    bgo_energy: np.ndarray, mip_multiple: float = SHOWER_START_MIP, fraction: float = SHOWER_START_FRACTION
) -> np.ndarray:
    """(N,) first layer above `mip_multiple` MIPs and `fraction` of the deposit; -1 if none.

    -1 means every layer looks like a lone track (no shower in the BGO): the ~20% of
    hadrons that cross 1.6 lambda_I without interacting.
    """
    el = np.asarray(bgo_energy, dtype=np.float64).sum(axis=2)
    thr = np.maximum(mip_multiple * geo.BGO_MIP_MEV, fraction * el.sum(axis=1, keepdims=True))
    above = el > thr
    return np.where(above.any(axis=1), np.argmax(above, axis=1), -1)
