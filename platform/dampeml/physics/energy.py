"""The standard energy estimate: the BGO deposit, corrected for what a contained electron shower
leaves unmeasured (leakage from the back and the sides, the gaps between bars), derived from MC.

The correction is the median of deposit / true energy of fiducial MC electrons, in bins of the
deposit (log-spaced), interpolated in log(deposit) and held constant beyond the outer bins. The
corrected energy is deposit / that ratio. It is for electrons: a hadron deposits a smaller and
wider-spread share of its energy, so a proton lands at a lower corrected energy (which is why the
background of a bin comes from protons of higher energy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from dampeml.errors import InputError

#: fewest MC electrons in a deposit bin for its median to count
MIN_EVENTS_PER_BIN = 20


class EnergyError(InputError):
    """MC that cannot make a correction (too few events)."""


@dataclass(frozen=True)
class EnergyCorrection:
    """Median deposit / true energy at log-spaced deposits (MeV)."""

    deposit_mev: tuple[float, ...]
    ratio: tuple[float, ...]

    def as_dict(self) -> dict:
        return asdict(self)

    def energy_gev(self, deposit_mev: np.ndarray) -> np.ndarray:
        """Corrected energy (GeV) of deposits (MeV)."""
        d = np.asarray(deposit_mev, dtype=np.float64)
        r = np.interp(np.log(np.maximum(d, 1e-9)), np.log(self.deposit_mev), self.ratio)
        return d / 1e3 / r


def fit_correction(
    deposit_mev: np.ndarray, true_energy_gev: np.ndarray, n_bins: int = 12
) -> EnergyCorrection:
    """The correction from MC electrons (fiducial ones: the correction is for contained showers)."""
    d = np.asarray(deposit_mev, dtype=np.float64)
    e = np.asarray(true_energy_gev, dtype=np.float64) * 1e3
    ok = (d > 0) & (e > 0)
    d, e = d[ok], e[ok]
    if len(d) < MIN_EVENTS_PER_BIN:
        raise EnergyError(f"{len(d)} MC electrons: the energy correction needs at least {MIN_EVENTS_PER_BIN}")
    edges = np.quantile(np.log(d), np.linspace(0, 1, n_bins + 1))
    which = np.clip(np.searchsorted(edges, np.log(d), side="right") - 1, 0, n_bins - 1)
    knots, ratios = [], []
    for b in range(n_bins):
        sel = which == b
        if sel.sum() >= MIN_EVENTS_PER_BIN:
            knots.append(float(np.exp(np.median(np.log(d[sel])))))
            ratios.append(float(np.median(d[sel] / e[sel])))
    if not knots:
        raise EnergyError("no deposit bin holds enough MC electrons for the energy correction")
    return EnergyCorrection(tuple(knots), tuple(ratios))


def held_out_estimate(deposit_mev: np.ndarray, true_energy_gev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(corrected energies of every event, mask of the held-out ones): the correction is fitted on the
    even-numbered events only, so a resolution measured on the odd ones (the mask) is not flattered by
    the fit having seen them."""
    d, e = np.asarray(deposit_mev, dtype=np.float64), np.asarray(true_energy_gev, dtype=np.float64)
    held_out = np.arange(len(d)) % 2 == 1
    return fit_correction(d[~held_out], e[~held_out]).energy_gev(d), held_out


def resolution(estimate_gev: np.ndarray, true_gev: np.ndarray) -> tuple[float, float]:
    """(bias, resolution) of an estimate: median of E/E_true - 1, and half the 16-84% width of it."""
    r = np.asarray(estimate_gev, dtype=np.float64) / np.asarray(true_gev, dtype=np.float64) - 1.0
    lo, med, hi = np.quantile(r, [0.16, 0.5, 0.84])
    return float(med), float((hi - lo) / 2)
