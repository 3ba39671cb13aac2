"""A particle-by-particle electromagnetic cascade: the reference for where an electron's shower starts.

The simulation draws an electron's longitudinal profile from GFlash's parametrisation (a gamma function
per shower, its shape fluctuating from shower to shower). GFlash was fitted to whole profiles, so its
first radiation lengths, which decide whether DAMPE's trigger sees the shower in the first BGO layer,
are an extrapolation. This module follows the particles themselves through those first radiation
lengths, one at a time, with textbook cross sections and nothing fitted:

- electrons and positrons lose energy by ionisation at the critical energy per radiation length and
  radiate photons with the Bethe-Heitler spectrum in complete screening, (1/k)(4/3 - 4/3 y + y^2)
  with y = k / E (photons below `PHOTON_CUT_MEV` are not followed; their energy stays with the
  electron and is ionised);
- photons convert after an exponential path of 9/7 X0 into a pair sharing their energy as
  1 - 4/3 x (1 - x); below `COMPTON_MEV`, where Compton scattering takes over, a photon is absorbed
  at once after an exponential path of `COMPTON_PATH_X0`;
- a charged particle below `CHARGED_CUT_MEV` ionises its remaining energy over its remaining range.

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

#: X0 of the tracker (its tungsten, silicon and supports: ~0.96 in `geometry`) an electron crosses
#: before the BGO top, where the simulation starts its shower
STK_PRESHOWER_X0 = 0.9
PHOTON_CUT_MEV = 0.5
COMPTON_MEV = 10.0
COMPTON_PATH_X0 = 2.5
CHARGED_CUT_MEV = 10.0
PAIR_PATH_X0 = 9.0 / 7.0
_EC = geo.BGO_CRITICAL_ENERGY_MEV

#: A handed-off particle: (is a photon, energy in MeV, depth in X0 where its own shower starts)
Handoff = tuple[bool, float, float]


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


def _ionise(deposits: list[float], edges: list[float], t0: float, t1: float) -> None:
    """Add the ionisation of a charged particle from depth t0 to t1 to each slab of `edges`."""
    i = max(bisect_right(edges, t0) - 1, 0)
    while i < len(deposits) and edges[i] < t1:
        overlap = min(t1, edges[i + 1]) - max(t0, edges[i])
        if overlap > 0.0:
            deposits[i] += overlap * _EC
        i += 1


def follow(
    rng: np.random.Generator,
    energy_mev: float,
    start_x0: float,
    edges: np.ndarray,
    switch_x0: float | None = None,
    handoff_mev: float | None = None,
) -> tuple[np.ndarray, list[Handoff]]:
    """Follow an electron of energy_mev from depth start_x0 down to switch_x0 (default: the last edge):
    the energy it and its secondaries ionise in each slab of `edges`, and the particles handed on.

    With `handoff_mev` None the particles that reach switch_x0 are dropped (a reference of the slabs
    above it). With a number, they are handed on with their depth, and so is every particle that falls
    below handoff_mev (but above the cuts) before it: each such particle's future is a shower of its
    own energy from its own depth, for a parametrisation to carry on. Energy is conserved exactly:
    what is not in the slabs is in the handed-off particles, above the first slab or below the last.
    One number is drawn from `rng` to seed the cascade's own generator (Python's, for speed)."""
    draw = random.Random(int(rng.integers(2**63)))
    bounds = [float(x) for x in edges]
    deposits = [0.0] * (len(bounds) - 1)
    end = bounds[-1] if switch_x0 is None else float(switch_x0)
    keep = handoff_mev is not None
    floor = handoff_mev or 0.0
    handed: list[Handoff] = []
    stack = [(False, float(energy_mev), float(start_x0))]
    while stack:
        photon, e, t = stack.pop()
        if t >= end:
            if keep:
                handed.append((photon, e, end))
            continue
        if photon:
            if e < COMPTON_MEV:
                slab = bisect_right(bounds, t + draw.expovariate(1.0 / COMPTON_PATH_X0)) - 1
                if 0 <= slab < len(deposits):
                    deposits[slab] += e
            elif e < floor:
                handed.append((True, e, t))
            else:
                t_pair = t + draw.expovariate(1.0 / PAIR_PATH_X0)
                x = _pair_share(draw)
                stack += [(False, x * e, t_pair), (False, (1.0 - x) * e, t_pair)]
            continue
        while True:
            if e <= CHARGED_CUT_MEV:
                _ionise(deposits, bounds, t, t + e / _EC)
                break
            if e <= floor:
                handed.append((False, e, t))
                break
            if t >= end:
                if keep:
                    handed.append((False, e, end))
                break
            path = draw.expovariate(_photons_per_x0(e))
            cut = max(CHARGED_CUT_MEV, floor)
            to_cut = (e - cut) / _EC
            if path >= to_cut or t + path >= end:  # no photon before the cut or the switch
                step = min(to_cut, end - t)
                _ionise(deposits, bounds, t, t + step)
                e = cut if step == to_cut else e - step * _EC
                t += step
                continue
            _ionise(deposits, bounds, t, t + path)
            e -= path * _EC
            t += path
            k = _photon_energy(draw, e)
            if k < e - CHARGED_CUT_MEV:
                e -= k
                stack.append((True, k, t))
    return np.asarray(deposits), handed


def shower_deposits(
    rng: np.random.Generator, energy_mev: float, start_x0: float, edges: np.ndarray
) -> np.ndarray:
    """Energy (MeV) an electron of energy_mev starting at depth start_x0 leaves in each slab of edges."""
    return follow(rng, energy_mev, start_x0, edges)[0]


def first_layer_deposits(rng: np.random.Generator, energy_mev: float, cos_theta: np.ndarray) -> np.ndarray:
    """(n,) energy (MeV) electrons with these cos(zenith) leave in the first BGO layer, each starting its
    shower where the simulation starts an electron's (`STK_PRESHOWER_X0` along its path above the
    BGO top) and crossing the layer's 2.23 X0 over cos(zenith)."""
    layer_x0 = geo.BGO_BAR_WIDTH / geo.BGO_X0
    return np.array(
        [
            shower_deposits(rng, energy_mev, -STK_PRESHOWER_X0, np.array([0.0, layer_x0 / c]))[0]
            for c in cos_theta
        ]
    )
