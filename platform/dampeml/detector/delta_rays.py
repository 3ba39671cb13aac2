"""Delta rays: knock-on electrons the primary frees in the tracker's material (simulation version 3).

A charged primary frees electrons along its path at a rate that scales as its charge squared
(the Bethe-Bloch knock-on spectrum, dN/dT dx = K/2 (Z/A) rho z^2 / (beta^2 T^2)). Those of a few
hundred keV and more leave the material they were made in at an angle given by the kinematics
(cos theta = sqrt(T / (T + 2 m_e)): 45-60 degrees below 1 MeV), scatter on the way out, and cross
the next silicon layers a fraction of a millimetre to centimetres from the primary's hit, until
their range runs out. So helium tracks carry about four times the protons' extra clusters near
them, at every energy, unlike backsplash, which grows with the shower's energy.

The material each layer sees, from the top: the support it is glued on (carbon fibre, 1 mm above
it, STK_SILICON_X0's share of support), its own silicon (320 um), and after planes 1-3 a
tungsten plate. Ranges from Katz and Penfold's electron range-energy relation (g/cm^2, nearly
material independent), scattering from the Highland formula. Nothing here is fitted: the rates
follow from the material and the cross section (docs/simulation.md, "Delta rays").
"""

from __future__ import annotations

import numpy as np

from dampeml import geometry as geo
from dampeml.detector.physics import landau_signal
from dampeml.detector.stk import Hits, measured_pair, primary_slopes

#: K/2 of the Bethe-Bloch formula, MeV cm^2 / g
K_HALF = 0.1535
ELECTRON_MASS_MEV = 0.511
#: Knock-on electrons below this cannot leave even the thinnest layer: not simulated.
T_MIN_MEV = 0.2
#: Above this the spectrum holds ~1% of the electrons, nearly along the primary: not simulated.
T_MAX_MEV = 20.0
SUPPORT_ABOVE_LAYER_MM = 1.0
CARBON_X0_G_CM2 = 42.7
#: (areal density g/cm^2, Z/A, radiation length g/cm^2) of each kind of slab
SUPPORT = ((geo.STK_SILICON_X0 - 0.32 / 93.7) * CARBON_X0_G_CM2, 0.50, CARBON_X0_G_CM2)
SILICON = (0.032 * 2.33, 0.4985, 21.82)
TUNGSTEN = (0.1 * 19.3, 0.4025, 6.76)


def _slabs() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """z (mm), areal density, Z/A and X0 of every slab of the tracker, sorted by z (downwards)."""
    rows = [(z - SUPPORT_ABOVE_LAYER_MM, *SUPPORT) for z in geo.STK_LAYER_Z]
    rows += [(z, *SILICON) for z in geo.STK_LAYER_Z]
    rows += [(z, *TUNGSTEN) for z in geo.STK_TUNGSTEN_Z]
    z, t, za, x0 = (np.array(c) for c in zip(*sorted(rows), strict=True))
    return z, t, za, x0


SLAB_Z, SLAB_T, SLAB_ZA, SLAB_X0 = _slabs()
#: material (g/cm^2, at normal incidence) above each z: what a delta ray crosses between two depths
_CUMULATIVE = np.concatenate([[0.0], np.cumsum(SLAB_T)])


def material_between(z_from: np.ndarray, z_to: np.ndarray) -> np.ndarray:
    """g/cm^2 of the slabs strictly below z_from and above z_to (normal incidence)."""
    return (
        _CUMULATIVE[np.searchsorted(SLAB_Z, z_to, side="left")]
        - _CUMULATIVE[np.searchsorted(SLAB_Z, z_from, side="right")]
    )


def electron_range(t_mev: np.ndarray) -> np.ndarray:
    """CSDA range (g/cm^2) of an electron of kinetic energy T (Katz and Penfold 1952)."""
    t = np.maximum(np.asarray(t_mev, dtype=np.float64), 1e-3)
    low = 0.412 * t ** (1.265 - 0.0954 * np.log(t))
    return np.where(t < 2.5, low, 0.530 * t - 0.106)


def _energy_of_range(r: np.ndarray) -> np.ndarray:
    """Inverse of electron_range, by interpolation on a fine grid."""
    grid = np.geomspace(1e-3, 2 * T_MAX_MEV, 2000)
    return np.interp(r, electron_range(grid), grid)


def expected_per_slab(charge2: float) -> np.ndarray:
    """Mean number of knock-on electrons above T_MIN_MEV freed in each slab at normal incidence."""
    return K_HALF * SLAB_ZA * SLAB_T * charge2 * (1.0 / T_MIN_MEV - 1.0 / T_MAX_MEV)


def delta_rays(
    rng: np.random.Generator,
    x_stk: np.ndarray,
    y_stk: np.ndarray,
    charge: int,
    cos_theta: np.ndarray,
    z_interaction: np.ndarray,
) -> Hits:
    """The STK clusters of the knock-on electrons of each primary (one row per event), in the
    slabs it crosses before it interacts; `x_stk`, `y_stk` (N, 12) its positions at the layers."""
    tx, ty = primary_slopes(x_stk, y_stk)
    # freed electrons per (event, slab): path length through the slab grows as 1 / cos(theta)
    mean = expected_per_slab(float(charge**2))[None, :] / cos_theta[:, None]
    mean = np.where(SLAB_Z[None, :] <= z_interaction[:, None], mean, 0.0)
    counts = rng.poisson(mean)
    ev, slab = np.nonzero(counts)
    ev, slab = np.repeat(ev, counts[ev, slab]), np.repeat(slab, counts[ev, slab])
    if len(ev) == 0:
        return Hits(*(np.empty(0, dt) for dt in (int, int, float, float, float, bool)))
    k = len(ev)
    u = rng.random(k)
    t = 1.0 / (1.0 / T_MIN_MEV - u * (1.0 / T_MIN_MEV - 1.0 / T_MAX_MEV))  # dN/dT ~ 1/T^2
    cos_d = np.sqrt(t / (t + 2.0 * ELECTRON_MASS_MEV))
    depth = rng.random(k) * SLAB_T[slab]  # g/cm^2 of the slab still below the production point
    path_out = depth / cos_d
    out = electron_range(t) > path_out
    ev, slab, t, cos_d, path_out = ev[out], slab[out], t[out], cos_d[out], path_out[out]
    k = len(ev)
    left = electron_range(t) - path_out  # range (g/cm^2) left on leaving the slab
    # direction: the kinematic angle about the primary, then multiple scattering on the way out
    t_exit = _energy_of_range(left)
    pbeta = t_exit * (t_exit + 2 * ELECTRON_MASS_MEV) / (t_exit + ELECTRON_MASS_MEV)
    x_x0 = np.maximum(path_out / SLAB_X0[slab], 1e-6)
    theta0 = 13.6 / pbeta * np.sqrt(x_x0) * np.maximum(1.0 + 0.038 * np.log(x_x0), 0.1)
    tan_d = np.sqrt(1.0 - cos_d**2) / cos_d
    phi = rng.uniform(0.0, 2.0 * np.pi, k)
    dtx = tx[ev] + tan_d * np.cos(phi) + rng.normal(0.0, 1.0, k) * theta0 * (1.0 + tan_d**2)
    dty = ty[ev] + tan_d * np.sin(phi) + rng.normal(0.0, 1.0, k) * theta0 * (1.0 + tan_d**2)
    # where the primary crossed the slab
    z0 = SLAB_Z[slab]
    layer_above = np.clip(np.searchsorted(geo.STK_LAYER_Z, z0, side="right") - 1, 0, geo.STK_N_LAYERS - 1)
    dz0 = z0 - geo.STK_LAYER_Z[layer_above]
    x0 = x_stk[ev, layer_above] + tx[ev] * dz0
    y0 = y_stk[ev, layer_above] + ty[ev] * dz0
    # the layers below, while range is left: each layer's own silicon is crossed on the way in
    dz = geo.STK_LAYER_Z[None, :] - z0[:, None]
    slant = np.sqrt(1.0 + dtx**2 + dty**2)[:, None]
    crossed = material_between(np.repeat(z0[:, None], geo.STK_N_LAYERS, 1), geo.STK_LAYER_Z[None, :]) * slant
    reach = (dz > 0) & (crossed < left[:, None])
    i, layer = np.nonzero(reach)
    x = x0[i] + dtx[i] * dz[i, layer]
    y = y0[i] + dty[i] * dz[i, layer]
    pos, other = measured_pair(layer, x, y)
    # slower electrons ionise more (dE/dx rises below ~1 MeV); the path grows with the slant
    t_here = _energy_of_range(left[i] - crossed[i, layer])
    boost = 1.0 + 0.3 / np.maximum(t_here, 0.1)
    sig = landau_signal(rng, np.ones(len(i)), np.minimum(slant[i, 0], 4.0)) * boost
    slope = measured_pair(layer, dtx[i], dty[i])[0]
    return Hits(ev[i], layer, pos, other, sig, np.zeros(len(i), dtype=bool), slope)
