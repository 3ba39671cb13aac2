"""Primary generation: power-law energies, isotropic flux on a sphere, cheap acceptance cut.

As in the DAMPE MC, particles start on a sphere around the instrument with directions
following the inward cosine law (an isotropic flux through the sphere), so only ~1% of
them cross every sub-detector. Rejection is a handful of vectorized plane
intersections per candidate, so billions of candidates cost little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dampeml import geometry as geo

#: Planes a particle must cross inside the active area: (z, half-width).
ACCEPTANCE_PLANES = (
    (geo.PSD_Z[0], geo.PSD_HALF_WIDTH),
    (geo.Z_TOP, geo.STK_HALF_WIDTH),
    (geo.Z_BOT, geo.STK_HALF_WIDTH),
    (geo.BGO_Z_TOP, geo.BGO_HALF_WIDTH),
    (geo.BGO_Z_BOTTOM, geo.BGO_HALF_WIDTH),
)
GENERATION_CHUNK = 1 << 18  # candidates drawn per vectorized step (fixed: keeps seeds reproducible)
#: Geometric factor of the generation (m2 sr): an isotropic flux J crosses a convex surface S at the
#: rate pi S J, so the candidates on the sphere stand for J x pi x 4 pi R^2. An acceptance is this
#: times the share of generated candidates that a selection keeps.
GENERATION_GEOMETRIC_FACTOR_M2SR = 4.0 * np.pi**2 * (geo.GENERATION_SPHERE_RADIUS / 1000.0) ** 2


@dataclass
class Primaries:
    """Accepted primaries: the straight line before any scattering, and the energy."""

    energy: np.ndarray  # kinetic energy, GeV
    x0: np.ndarray  # x at z = 0 (mm)
    y0: np.ndarray
    tx: np.ndarray  # dx/dz
    ty: np.ndarray  # dy/dz
    #: candidates drawn up to and including each accepted primary (a prefix's generated count)
    generated_through: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.energy)

    @property
    def cos_theta(self) -> np.ndarray:
        return 1.0 / np.sqrt(1.0 + self.tx**2 + self.ty**2)


def sample_power_law(
    rng: np.random.Generator, n: int, e_min: float, e_max: float, index: float
) -> np.ndarray:
    """Energies with dN/dE ~ E^-index between e_min and e_max (inverse CDF)."""
    u = rng.random(n)
    if abs(index - 1.0) < 1e-12:
        return e_min * (e_max / e_min) ** u
    g = 1.0 - index
    return (e_min**g + u * (e_max**g - e_min**g)) ** (1.0 / g)


def _candidates(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Points on the sphere with inward cosine-law directions, as line parameters."""
    # uniform point on the sphere
    cz = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    sz = np.sqrt(1.0 - cz**2)
    nrm = np.stack([sz * np.cos(phi), sz * np.sin(phi), cz], axis=1)
    pos = geo.GENERATION_SPHERE_RADIUS * nrm
    pos[:, 2] += geo.GENERATION_SPHERE_CENTRE_Z
    # cosine law about the inward normal: cos = sqrt(u)
    cos_a = np.sqrt(rng.random(n))
    sin_a = np.sqrt(1.0 - cos_a**2)
    psi = rng.uniform(0.0, 2 * np.pi, n)
    # orthonormal frame (e1, e2, -nrm)
    helper = np.where(np.abs(nrm[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    e1 = np.cross(nrm, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(nrm, e1)
    d = -cos_a[:, None] * nrm + (sin_a * np.cos(psi))[:, None] * e1 + (sin_a * np.sin(psi))[:, None] * e2
    return pos, d


def _candidate_lines(pos: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
    """(downward, x0, y0, tx, ty): candidates as lines x = x0 + tx z. z grows downward, so a particle
    must travel to +z; the others get tx = ty = 0 and `downward` False."""
    down = d[:, 2] > 1e-6
    dz = np.where(down, d[:, 2], 1.0)
    tx, ty = d[:, 0] / dz, d[:, 1] / dz
    return down, pos[:, 0] - tx * pos[:, 2], pos[:, 1] - ty * pos[:, 2], tx, ty


def accepted_mask(x0: np.ndarray, y0: np.ndarray, tx: np.ndarray, ty: np.ndarray) -> np.ndarray:
    """True where the straight line crosses every acceptance plane inside its active area."""
    ok = np.ones(len(x0), dtype=bool)
    for z, half in ACCEPTANCE_PLANES:
        ok &= (np.abs(x0 + tx * z) < half) & (np.abs(y0 + ty * z) < half)
    return ok


def generate_primaries(
    rng: np.random.Generator, n_events: int, e_min: float, e_max: float, index: float = 1.0
) -> tuple[Primaries, int]:
    """Draw candidates until `n_events` are accepted; return them and the number generated."""
    if n_events < 0 or not (0 < e_min < e_max):
        raise ValueError(f"need n_events >= 0 and 0 < e_min < e_max, got {n_events}, {e_min}, {e_max}")
    parts: list[tuple[np.ndarray, ...]] = []
    through: list[np.ndarray] = []
    n_acc = 0
    n_gen = 0
    while n_acc < n_events:
        down, x0, y0, tx, ty = _candidate_lines(*_candidates(rng, GENERATION_CHUNK))
        ok = down & accepted_mask(x0, y0, tx, ty)
        idx = np.flatnonzero(ok)
        need = n_events - n_acc
        through.append(n_gen + idx[:need] + 1)
        if len(idx) >= need:  # count generated up to and including the last accepted one
            idx = idx[:need]
            n_gen += int(idx[-1]) + 1 if need else 0
        else:
            n_gen += GENERATION_CHUNK
        parts.append((x0[idx], y0[idx], tx[idx], ty[idx]))
        n_acc += len(idx)
    x0, y0, tx, ty = (np.concatenate(p) for p in zip(*parts, strict=True)) if parts else (np.empty(0),) * 4
    energy = sample_power_law(rng, n_events, e_min, e_max, index)
    drawn = np.concatenate(through) if through else np.zeros(0, dtype=np.int64)
    return Primaries(energy, x0, y0, tx, ty, drawn), n_gen


def count_accepted(rng: np.random.Generator, n_candidates: int) -> int:
    """How many of `n_candidates` fresh candidates the instrument accepts (a flight-like run's count:
    the primaries that reach the sphere in a live time, of which the instrument sees these)."""
    accepted, left = 0, int(n_candidates)
    while left > 0:
        n = min(left, GENERATION_CHUNK)
        down, x0, y0, tx, ty = _candidate_lines(*_candidates(rng, n))
        accepted += int((down & accepted_mask(x0, y0, tx, ty)).sum())
        left -= n
    return accepted
