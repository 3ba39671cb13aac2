"""PSD response: energy per bar from every particle crossing the two layers.

The primary deposits ~2 MeV x Z^2 per cm of plastic (Landau-distributed, path-length
corrected); secondaries of an interaction in the first layer add to the second; albedo
particles from the calorimeter add deposits across the detector, which is why the PSD
charge degrades at the highest energies (paper, Fig. 2).
"""

from __future__ import annotations

import numpy as np

from dampeml import geometry as geo
from dampeml.detector.physics import landau_signal
from dampeml.detector.stk import Hits, measured_pair

PSD_LANDAU_WIDTH = 0.12


def primary_psd_hits(
    rng: np.random.Generator, x_psd: np.ndarray, y_psd: np.ndarray, charge: int, cos_theta: np.ndarray
) -> Hits:
    """The primary crosses both layers (an interaction in the PSD happens inside a layer)."""
    n = len(x_psd)
    ev = np.repeat(np.arange(n), geo.PSD_N_LAYERS)
    plane = np.tile(np.arange(-geo.PSD_N_LAYERS, 0), n)
    x, y = x_psd.ravel(), y_psd.ravel()
    pos, other = measured_pair(plane, x, y)
    sig = landau_signal(rng, np.full(len(ev), charge**2), 1.0 / cos_theta[ev], PSD_LANDAU_WIDTH)
    return Hits(ev, plane, pos, other, sig, np.ones(len(ev), dtype=bool))


def psd_energy(hits: Hits, n_events: int) -> np.ndarray:
    """(N, 2, 41) MeV per bar from the PSD hits (plane -2: layer 0, -1: layer 1)."""
    h = hits.select(hits.plane < 0)
    layer = h.plane + geo.PSD_N_LAYERS
    bar = np.floor((h.pos + geo.PSD_HALF_WIDTH) / geo.PSD_BAR_PITCH).astype(int)
    ok = (bar >= 0) & (bar < geo.PSD_BARS_PER_LAYER) & (np.abs(h.other) < geo.PSD_HALF_WIDTH)
    out = np.zeros((n_events, geo.PSD_N_LAYERS, geo.PSD_BARS_PER_LAYER))
    np.add.at(out, (h.event[ok], layer[ok], bar[ok]), h.signal[ok] * geo.PSD_MIP_MEV)
    return out.astype(np.float32)
