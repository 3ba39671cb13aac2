"""Small physics formulas shared by the sub-detector models (pure numpy)."""

from __future__ import annotations

import numpy as np

MASS_GEV = {"proton": 0.938272, "helium": 3.727379, "electron": 0.000511}


def momentum(particle: str, kinetic_gev: np.ndarray) -> np.ndarray:
    """Momentum in GeV/c from the kinetic energy."""
    m = MASS_GEV[particle]
    return np.sqrt(kinetic_gev**2 + 2.0 * kinetic_gev * m)


def highland_theta0(p_gev: np.ndarray, charge: int, x_over_x0: np.ndarray) -> np.ndarray:
    """RMS plane scattering angle (rad), PDG Highland formula with beta = 1."""
    x = np.maximum(x_over_x0, 1e-9)
    return 13.6e-3 / p_gev * charge * np.sqrt(x) * (1.0 + 0.038 * np.log(x * charge**2))


def moyal(
    rng: np.random.Generator, shape, loc: float | np.ndarray = 0.0, scale: float | np.ndarray = 1.0
) -> np.ndarray:
    """Moyal (Landau-like) samples: -ln(chi2_1), the standard stand-in for energy-loss straggling."""
    z = rng.standard_normal(shape)
    return loc + scale * (-np.log(np.maximum(z * z, 1e-300)))


def landau_signal(
    rng: np.random.Generator, charge2: np.ndarray, path_factor: np.ndarray, rel_width: float = 0.08
) -> np.ndarray:
    """Energy-loss signal in MIP units: most probable ~ Z^2 x path length, Landau tail upward.

    The Moyal variable has mode 0 and a long tail; with `rel_width` ~ 0.08 the mean sits
    ~10% above the most probable value, as for thin silicon.
    """
    charge2 = np.asarray(charge2, dtype=np.float64)
    m = moyal(rng, np.shape(charge2), 0.0, rel_width)
    return charge2 * path_factor * (1.0 + np.minimum(m, 40.0) - rel_width * 0.2)


def laplace_cdf(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """CDF of a centred Laplace distribution: the projected core/halo of a shower."""
    e = 0.5 * np.exp(-np.abs(x) / scale)
    return np.where(x < 0, e, 1.0 - e)
