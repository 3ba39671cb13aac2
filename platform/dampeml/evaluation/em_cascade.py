"""A particle-by-particle electromagnetic cascade: a bound on where an electron's shower starts.

The simulation draws an electron's longitudinal profile from GFlash's parametrisation (a gamma function
per shower, its shape fluctuating from shower to shower). GFlash was fitted to whole profiles, so its
first radiation lengths, which decide whether DAMPE's trigger sees the shower in the first BGO layer,
are an extrapolation. This module follows the particles themselves through them, one at a time:

- electrons and positrons lose energy by ionisation at the critical energy per radiation length and
  radiate photons with the Bethe-Heitler spectrum in complete screening, (1/k)(4/3 - 4/3 y + y^2)
  with y = k / E (photons below `PHOTON_CUT_MEV` are not followed; their energy stays with the
  electron and is ionised);
- photons convert after an exponential path into a pair sharing their energy as 1 - 4/3 x (1 - x);
  below `COMPTON_MEV`, where Compton scattering takes over, a photon is absorbed at once after an
  exponential path of `COMPTON_PATH_X0`;
- a charged particle below `CHARGED_CUT_MEV` ionises its remaining energy over its remaining range.

The conversion path is the one uncertain input: 9/7 X0 holds above ~10 GeV, but in a heavy crystal the
pair cross section reaches its asymptotic value only slowly, so 10 MeV-1 GeV photons go further.
`slow_pairs` stretches the path by 1 / min(1, 0.41 + 0.2 log10(k / 10 MeV)) (2.4x at 10 MeV, 1.6x at
100 MeV, 1.2x at 1 GeV): the trend of heavy elements' cross sections, not a table for BGO. The two
settings bracket the first layer: a cascade that converts at once, and one that converts late.

It is one-dimensional (no multiple scattering, no lateral spread), so it gives a layer's whole energy,
not its hottest bar's. Depths are in radiation lengths along the path, the BGO's top at 0; anything
above the BGO (the tracker's tungsten) only converts and showers, its deposits are not counted.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right

import numpy as np

from dampeml import geometry as geo
from dampeml.detector.bgo import STK_PRESHOWER_X0

PHOTON_CUT_MEV = 0.5
COMPTON_MEV = 10.0
COMPTON_PATH_X0 = 2.5
CHARGED_CUT_MEV = 10.0
PAIR_PATH_X0 = 9.0 / 7.0
_EC = geo.BGO_CRITICAL_ENERGY_MEV


def _photons_per_x0(e: float) -> float:
    """Bremsstrahlung photons above PHOTON_CUT_MEV radiated per X0 by an electron of energy e."""
    y_min = PHOTON_CUT_MEV / e
    return 4.0 / 3.0 * -math.log(y_min) - 4.0 / 3.0 * (1.0 - y_min) + (1.0 - y_min**3) / 2.0


def _photon_energy(draw: random.Random, e: float) -> float:
    """One photon's energy from the complete-screening spectrum (rejection from 1/k)."""
    y_min = PHOTON_CUT_MEV / e
    while True:
        y = y_min ** draw.random()
        if draw.random() * 4.0 / 3.0 < 4.0 / 3.0 - 4.0 / 3.0 * y + y * y:
            return y * e


def _pair_share(draw: random.Random) -> float:
    """The electron's share of a converted photon's energy (Bethe-Heitler, complete screening)."""
    while True:
        x = draw.random()
        if draw.random() < 1.0 - 4.0 / 3.0 * x * (1.0 - x):
            return x


def _pair_path_x0(e: float, slow_pairs: bool) -> float:
    """Mean conversion path (X0) of a photon of energy e (module docstring)."""
    return PAIR_PATH_X0 / min(1.0, 0.41 + 0.2 * math.log10(e / 10.0)) if slow_pairs else PAIR_PATH_X0


def _ionise(deposits: list[float], edges: list[float], t0: float, t1: float) -> None:
    """Add the ionisation of a charged particle from depth t0 to t1 to each slab of `edges`."""
    i = max(bisect_right(edges, t0) - 1, 0)
    while i < len(deposits) and edges[i] < t1:
        overlap = min(t1, edges[i + 1]) - max(t0, edges[i])
        if overlap > 0.0:
            deposits[i] += overlap * _EC
        i += 1


def shower_deposits(
    rng: np.random.Generator, energy_mev: float, start_x0: float, edges: np.ndarray, slow_pairs: bool = False
) -> np.ndarray:
    """Energy (MeV) an electron of energy_mev starting at depth start_x0 leaves in each slab of `edges`
    (particles past the last edge are dropped). One number drawn from `rng` seeds the cascade's own
    generator (Python's, for speed)."""
    draw = random.Random(int(rng.integers(2**63)))
    bounds = [float(x) for x in edges]
    deposits = [0.0] * (len(bounds) - 1)
    end = bounds[-1]
    stack = [(False, float(energy_mev), float(start_x0))]
    while stack:
        photon, e, t = stack.pop()
        if t >= end:
            continue
        if photon:
            if e < COMPTON_MEV:
                slab = bisect_right(bounds, t + draw.expovariate(1.0 / COMPTON_PATH_X0)) - 1
                if 0 <= slab < len(deposits):
                    deposits[slab] += e
            else:
                t_pair = t + draw.expovariate(1.0 / _pair_path_x0(e, slow_pairs))
                x = _pair_share(draw)
                stack += [(False, x * e, t_pair), (False, (1.0 - x) * e, t_pair)]
            continue
        while t < end:
            if e <= CHARGED_CUT_MEV:
                _ionise(deposits, bounds, t, t + e / _EC)
                break
            path = draw.expovariate(_photons_per_x0(e))
            to_cut = (e - CHARGED_CUT_MEV) / _EC
            if path >= to_cut or t + path >= end:  # no photon before the cut or the last edge
                step = min(to_cut, end - t)
                _ionise(deposits, bounds, t, t + step)
                e = CHARGED_CUT_MEV if step == to_cut else e - step * _EC
                t += step
                continue
            _ionise(deposits, bounds, t, t + path)
            e -= path * _EC
            t += path
            k = _photon_energy(draw, e)
            if k < e - CHARGED_CUT_MEV:
                e -= k
                stack.append((True, k, t))
    return np.asarray(deposits)


def first_layer_deposits(
    rng: np.random.Generator, energy_mev: float, cos_theta: np.ndarray, slow_pairs: bool = False
) -> np.ndarray:
    """(n,) energy (MeV) electrons with these cos(zenith) leave in the first BGO layer, each starting its
    shower where the simulation starts an electron's (`bgo.STK_PRESHOWER_X0` along its path above the
    BGO top) and crossing the layer's 2.23 X0 over cos(zenith)."""
    layer_x0 = geo.BGO_BAR_WIDTH / geo.BGO_X0
    edges = [np.array([0.0, layer_x0 / c]) for c in cos_theta]
    return np.array([shower_deposits(rng, energy_mev, -STK_PRESHOWER_X0, e, slow_pairs)[0] for e in edges])
