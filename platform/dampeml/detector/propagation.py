"""The primary through PSD and STK: multiple scattering and the first inelastic interaction.

The trajectory is stepped through a fixed, z-ordered list of stations (PSD layers, STK
layers, tungsten plates, the two reference planes); each material station kicks the
slopes by a Highland angle. All events move together, one station at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dampeml import geometry as geo
from dampeml.detector.generator import Primaries
from dampeml.detector.physics import highland_theta0, momentum

#: Material that can host an inelastic interaction before the BGO: (z, thickness in
#: proton interaction lengths at normal incidence). The PSD counts 15 mm of plastic per
#: (staggered) layer, the STK layers 0.3% lambda_I each for silicon plus the carbon-fibre
#: trays, the tungsten plates 1 mm / 99 mm. Sum: ~11% for protons at normal incidence.
INTERACTION_SLABS_Z = np.concatenate([geo.PSD_Z, geo.STK_LAYER_Z, geo.STK_TUNGSTEN_Z])
INTERACTION_SLABS_LAMBDA = np.concatenate(
    [
        np.full(geo.PSD_N_LAYERS, 15.0 / 700.0),
        np.full(geo.STK_N_LAYERS, 0.003),
        np.full(len(geo.STK_TUNGSTEN_Z), 1.0 / 99.0),
    ]
)
#: Inelastic cross-section relative to the proton's on the detector's light/medium nuclei:
#: helium interacts more often (geometric cross-sections, ~(A_p^1/3 + A_t^1/3)^2 scaling).
CROSS_SECTION_RATIO = {"proton": 1.0, "helium": 1.6, "electron": 0.0}

_STATIONS = np.concatenate([geo.PSD_Z, geo.STK_LAYER_Z, geo.STK_TUNGSTEN_Z, [geo.Z_TOP, geo.Z_BOT]])
_STATION_X0 = np.concatenate(
    [
        np.full(geo.PSD_N_LAYERS, 15.0 / 424.0),  # plastic X0 = 42.4 cm
        np.full(geo.STK_N_LAYERS, geo.STK_SILICON_X0),
        np.full(len(geo.STK_TUNGSTEN_Z), geo.STK_TUNGSTEN_X0),
        [0.0, 0.0],
    ]
)
_ORDER = np.argsort(_STATIONS, kind="stable")
_N_PSD, _N_STK = geo.PSD_N_LAYERS, geo.STK_N_LAYERS


@dataclass
class Trajectory:
    """Where the primary is at each station (mm), and its slopes leaving the STK."""

    x_psd: np.ndarray  # (N, 2)
    y_psd: np.ndarray
    x_stk: np.ndarray  # (N, 12)
    y_stk: np.ndarray
    x_top: np.ndarray
    y_top: np.ndarray
    x_bot: np.ndarray
    y_bot: np.ndarray
    tx_out: np.ndarray  # slopes below the STK, used to extend the track into the BGO
    ty_out: np.ndarray
    z_out: float  # z where (x_out, y_out) are given
    x_out: np.ndarray
    y_out: np.ndarray

    def at(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, len(z)) positions below the STK (e.g. BGO layers), straight from the last station."""
        dz = np.asarray(z, dtype=np.float64)[None, :] - self.z_out
        return (
            self.x_out[:, None] + self.tx_out[:, None] * dz,
            self.y_out[:, None] + self.ty_out[:, None] * dz,
        )


def propagate(rng: np.random.Generator, prim: Primaries, particle: str, charge: int) -> Trajectory:
    """Step all primaries through the stations, scattering in each piece of material."""
    n = len(prim)
    p = momentum(particle, prim.energy)
    tx, ty = prim.tx.copy(), prim.ty.copy()
    path = np.sqrt(1.0 + tx**2 + ty**2)
    z_sorted = _STATIONS[_ORDER]
    x = prim.x0 + tx * z_sorted[0]
    y = prim.y0 + ty * z_sorted[0]
    pos_x = np.empty((n, len(_STATIONS)))
    pos_y = np.empty((n, len(_STATIONS)))
    z_prev = z_sorted[0]
    for st in _ORDER:
        z = _STATIONS[st]
        x = x + tx * (z - z_prev)
        y = y + ty * (z - z_prev)
        z_prev = z
        pos_x[:, st], pos_y[:, st] = x, y
        if _STATION_X0[st] > 0:
            th0 = highland_theta0(p, charge, _STATION_X0[st] * path)
            tx = tx + th0 * rng.standard_normal(n)
            ty = ty + th0 * rng.standard_normal(n)
    i_stk = slice(_N_PSD, _N_PSD + _N_STK)
    return Trajectory(
        x_psd=pos_x[:, :_N_PSD],
        y_psd=pos_y[:, :_N_PSD],
        x_stk=pos_x[:, i_stk],
        y_stk=pos_y[:, i_stk],
        x_top=pos_x[:, -2],
        y_top=pos_y[:, -2],
        x_bot=pos_x[:, -1],
        y_bot=pos_y[:, -1],
        tx_out=tx,
        ty_out=ty,
        z_out=float(z_prev),
        x_out=x,
        y_out=y,
    )


def sample_interactions(
    rng: np.random.Generator, n: int, particle: str, cos_theta: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """First inelastic interaction before the BGO: (interacted, z); z = +inf where none."""
    ratio = CROSS_SECTION_RATIO[particle]
    z = np.full(n, np.inf)
    if ratio == 0.0:
        return np.zeros(n, dtype=bool), z
    prob = 1.0 - np.exp(-ratio * INTERACTION_SLABS_LAMBDA[None, :] / cos_theta[:, None])
    order = np.argsort(INTERACTION_SLABS_Z)
    hit = rng.random((n, len(order))) < prob[:, order]
    interacted = hit.any(axis=1)
    first = np.argmax(hit, axis=1)
    z[interacted] = INTERACTION_SLABS_Z[order][first[interacted]]
    return interacted, z
