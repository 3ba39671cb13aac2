"""Electron/proton shower variables of the BGO: the DNN branch of the e/p classifier (seed 001).

Electromagnetic showers start at the BGO top, peak early and stay narrow (Moliere radius
22 mm); hadronic ones start deeper, spread wider and leak out of the bottom. The
variables are those of the DAMPE electron analyses, per event:

- total_mev: the total deposit (MeV; log it before a network);
- frac_00..frac_13: the layer's share of the deposit;
- rms_00..rms_13: the layer's energy-weighted RMS width (mm) around its own energy-weighted
  centroid, over all 22 bars (0 for an empty layer);
- max_layer: the layer with the most energy;
- first_layer: the first layer above START_THRESHOLD_MEV (5 MIP: more than one particle
  crossed it, so the shower has started); 14 if none;
- zeta: F_last * (sum of RMS / mm)^4 / 8e6, DAMPE's electron/proton discriminant: the
  energy share of the last layer times the fourth power of the summed widths, scaled so
  that electrons sit below ~8.5 and protons above;
- depth: the energy-weighted mean layer (0 = top);
- n_bars: the number of bars above FIRED_BAR_MEV.
Empty events give zeros (first_layer 14), never NaN.
"""

from __future__ import annotations

import numpy as np

from dampeml import geometry as geo

START_THRESHOLD_MEV = 5 * geo.BGO_MIP_MEV
FIRED_BAR_MEV = 1.0  # the readout's zero-suppression level
ZETA_SCALE = 8e6
_L = geo.BGO_N_LAYERS
SHOWER_VARIABLE_NAMES: tuple[str, ...] = (
    ("total_mev",)
    + tuple(f"frac_{i:02d}" for i in range(_L))
    + tuple(f"rms_{i:02d}" for i in range(_L))
    + ("max_layer", "first_layer", "zeta", "depth", "n_bars")
)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def layer_rms(bgo_energy: np.ndarray) -> np.ndarray:
    """(N, 14) energy-weighted RMS width (mm) of each layer around its own centroid."""
    e = np.asarray(bgo_energy, dtype=np.float64)
    x = geo.BGO_BAR_CENTRES
    e_layer = e.sum(axis=2)
    centroid = _safe_div(e @ x, e_layer)
    var = _safe_div(np.einsum("nlb,nlb->nl", e, (x[None, None, :] - centroid[..., None]) ** 2), e_layer)
    return np.sqrt(np.maximum(var, 0.0))


def shower_variables(bgo_energy: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, 14, 22) bar energies (MeV) -> ((N, 34) float32 variables, their names)."""
    e = np.asarray(bgo_energy, dtype=np.float64)
    e = np.where(np.isfinite(e) & (e > 0), e, 0.0)
    e_layer = e.sum(axis=2)
    total = e_layer.sum(axis=1)
    frac = _safe_div(e_layer, total[:, None])
    rms = layer_rms(e)
    above = e_layer > START_THRESHOLD_MEV
    first = np.where(above.any(axis=1), above.argmax(axis=1), _L)
    zeta = frac[:, -1] * rms.sum(axis=1) ** 4 / ZETA_SCALE
    depth = frac @ np.arange(_L)
    n_bars = (e > FIRED_BAR_MEV).sum(axis=(1, 2))
    out = np.column_stack([total, frac, rms, e_layer.argmax(axis=1), first, zeta, depth, n_bars])
    return out.astype(np.float32), SHOWER_VARIABLE_NAMES
