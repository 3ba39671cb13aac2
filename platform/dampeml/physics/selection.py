"""Containment classes of showers in the BGO, as the electron-flux analysis of seed 001 defines them.

The shower axis (a (N, 4) track: x, y at the first and last STK planes, as every direction in the
project is given) is extrapolated to the top and the bottom of the BGO:
- top-fiducial: at the BGO top within FIDUCIAL_HALF_MM of the centre in x and in y (the shower
  enters through the top face);
- fiducial: top-fiducial and also at the bottom within FIDUCIAL_HALF_MM (contained: the deposit
  measures the energy);
- non-fiducial: top-fiducial but the bottom outside (the shower leaks out of a side: the deposit
  underestimates the energy; seed 001 reconstructs these with a CNN and classifies them apart).
Anything else (entering through a side, or no axis) is outside the analysis.
"""

from __future__ import annotations

import numpy as np

from dampeml import geometry as geo
from dampeml.features.tracks import position_at

#: Half-width (mm) of the square the axis must cross at the BGO top (and bottom): the seed's 280 mm,
#: 21 mm inside the BGO's 301 mm edge (the outermost bar).
FIDUCIAL_HALF_MM = 280.0
OUTSIDE, NON_FIDUCIAL, FIDUCIAL = 0, 1, 2
#: class index -> name
CLASSES = ("outside", "non-fiducial", "fiducial")


def _inside(track: np.ndarray, z: float, half: float) -> np.ndarray:
    x, y = position_at(track, z)
    return (np.abs(x) < half) & (np.abs(y) < half)  # False for NaN (no axis)


def containment(track: np.ndarray, half_mm: float = FIDUCIAL_HALF_MM) -> np.ndarray:
    """(N,) FIDUCIAL, NON_FIDUCIAL or OUTSIDE of each axis (module docstring)."""
    top = _inside(track, geo.BGO_Z_TOP, half_mm)
    bottom = _inside(track, geo.BGO_Z_BOTTOM, half_mm)
    return np.where(top & bottom, FIDUCIAL, np.where(top, NON_FIDUCIAL, OUTSIDE)).astype(np.int8)


def top_fiducial(track: np.ndarray, half_mm: float = FIDUCIAL_HALF_MM) -> np.ndarray:
    """(N,) bool: the axis enters through the BGO's top face (fiducial or non-fiducial)."""
    return containment(track, half_mm) != OUTSIDE
