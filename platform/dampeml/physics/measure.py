"""The flux measurement: flight events, electron and proton MC in, one flux point per energy bin out.

1. Selection: the containment class of the shower axis (`selection.containment`; fiducial by default).
2. Energy: the deposit corrected with the MC electrons' median deposit / true energy (`energy`), or
   the samples' own estimate (the energy network's, `networks`) when all three carry one.
3. Per bin of corrected energy: the cut keeps `target_efficiency` of the bin's electron MC; the
   control region (where protons dominate) is below the score of the bin's lowest 1% of electron MC;
   then `flux.flux_point`: efficiency, background from the proton MC normalised in the control
   region, counts, and flux with the acceptance of the selection from the electron MC.
The proton template can be shifted (`proton_shift`, added to every proton MC score: a deliberately
mis-modelled template for studies) and, with `fit_proton_shift`, fitted per bin to the flight data (the
seed had to shift its proton template by hand for the same reason): the shift and the electron share
for which the proton template and the electron MC's scores, mixed, describe the flight's score
histogram best (`fit_template_shift`). A median alignment would need protons to outnumber electrons by
far; behind the high-energy trigger a bin of deposited energy can hold a third of electrons.
The acceptance of a bin is the geometric factor of the generation times the electron MC selected
with a corrected energy in the bin over that generated with a true energy in it (bin migration is
included at the MC's spectrum: small for electrons, whose resolution is a few percent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dampeml.detector.generator import GENERATION_GEOMETRIC_FACTOR_M2SR
from dampeml.physics.energy import EnergyCorrection, fit_correction
from dampeml.physics.flux import BinCounts, FluxError, FluxPoint, acceptance, cut_for_efficiency, flux_point
from dampeml.physics.flux import generated_in_bin as generated_share
from dampeml.physics.selection import FIDUCIAL, containment

#: the control region: below the score of this share of a bin's electron MC
CONTROL_ELECTRON_SHARE = 0.01
#: the proton template shifts the fit tries (score units: -log10 zeta) and the electron shares
SHIFT_GRID = np.arange(-4.0, 4.0001, 0.02)
ELECTRON_SHARE_GRID = np.linspace(0.0, 1.0, 201)
#: score histogram of the template fit: bins between the flight's 0.5% and 99.5% quantiles
FIT_BINS = 40


@dataclass
class EventSample:
    """Per event: the shower axis (N, 4), the BGO deposit (MeV), the score (higher: more electron-like),
    for MC the true kinetic energy (GeV), and an energy estimate other than the standard one (GeV: the
    energy network's) when there is."""

    axis: np.ndarray
    deposit_mev: np.ndarray
    score: np.ndarray
    true_energy_gev: np.ndarray | None = None
    energy_gev: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.deposit_mev)


@dataclass(frozen=True)
class BinScores:
    """What one bin's point was made of: each sample's scores in the bin, the cut and the control
    region, and the proton MC's normalisation to the flight counts (the seed's Data/MC plots)."""

    e_low: float
    e_high: float
    cut: float
    control_below: float
    flight: np.ndarray
    electrons: np.ndarray
    protons: np.ndarray
    proton_norm: float
    proton_shift: float = 0.0  # added to the proton MC's scores (given, or fitted to the flight data)
    proton_shift_err: float = 0.0  # the fitted part's error (0 when not fitted)


@dataclass
class FluxMeasurement:
    """The flux points, the energy correction, each bin's scores, and the selected electron MC's
    corrected and true energies (the energy resolution)."""

    points: list[FluxPoint]
    correction: EnergyCorrection
    bins: list[BinScores]
    electron_energy_gev: np.ndarray
    electron_true_gev: np.ndarray
    own_energy: bool = False  # the samples' own energy estimate (the network's) instead of the correction


@dataclass(frozen=True)
class Generation:
    """How an MC sample (or one of its files) was generated: primaries drawn, and their spectrum."""

    n_generated: float
    energy_min: float
    energy_max: float
    index: float


def generated_in_bin(generations: list[Generation], lo: float, hi: float) -> float:
    """Primaries of all `generations` with a true energy in [lo, hi]."""
    return sum(
        generated_share(g.n_generated, g.energy_min, g.energy_max, g.index, lo, hi) for g in generations
    )


def fit_template_shift(flight: np.ndarray, protons: np.ndarray, electrons: np.ndarray) -> tuple[float, float]:
    """The shift of the proton scores that, mixed with the electron scores at the best share, describes
    the flight scores best (a binned Poisson likelihood over SHIFT_GRID x ELECTRON_SHARE_GRID), and its
    error: both from a parabola through the profile likelihood's best grid point and its neighbours."""
    lo, hi = np.quantile(flight, [0.005, 0.995])
    edges = np.linspace(lo, hi, FIT_BINS + 1) if hi > lo else np.array([lo - 0.5, lo + 0.5])
    observed = np.histogram(flight, edges)[0].astype(np.float64)

    def shape(x: np.ndarray) -> np.ndarray:  # the share of all of x in each bin (outside: lost)
        return np.histogram(x, edges)[0] / max(len(x), 1)

    e_shape = shape(electrons)
    p_shapes = np.stack([shape(protons + s) for s in SHIFT_GRID])  # (S, B)
    f = ELECTRON_SHARE_GRID[None, :, None]
    mixed = (1.0 - f) * p_shapes[:, None, :] + f * e_shape[None, None, :]  # (S, F, B)
    expected = np.maximum(mixed * observed.sum() / np.maximum(mixed.sum(axis=2, keepdims=True), 1e-12), 1e-9)
    profile = (observed * np.log(expected) - expected).sum(axis=2).max(axis=1)  # (S,): the best share each
    i = int(np.clip(np.argmax(profile), 1, len(SHIFT_GRID) - 2))
    step = SHIFT_GRID[1] - SHIFT_GRID[0]
    left, mid, right = profile[i - 1 : i + 2]
    curvature = (left - 2 * mid + right) / step**2
    if curvature >= 0:  # flat: the data do not constrain the shift
        return float(SHIFT_GRID[i]), float("inf")
    vertex = SHIFT_GRID[i] - step * (right - left) / (2 * (left - 2 * mid + right))
    return float(vertex), float(np.sqrt(-1.0 / curvature))


def measure_flux(
    flight: EventSample,
    electrons: EventSample,
    protons: EventSample,
    electron_generation: list[Generation],
    live_time_s: float,
    bins_gev: np.ndarray,
    selection: int = FIDUCIAL,
    target_efficiency: float = 0.9,
    proton_shift: float = 0.0,
    fit_proton_shift: bool = False,
) -> FluxMeasurement:
    """One flux point per bin of `bins_gev` (edges), with what it was made of (module docstring)."""
    if electrons.true_energy_gev is None:
        raise FluxError("the electron MC needs its true energies (the energy correction and the acceptance)")
    picked = {name: containment(s.axis) == selection for name, s in
              (("flight", flight), ("electrons", electrons), ("protons", protons))}  # fmt: skip
    e_sel = picked["electrons"]
    correction = fit_correction(electrons.deposit_mev[e_sel], electrons.true_energy_gev[e_sel])
    samples = {"flight": flight, "electrons": electrons, "protons": protons}
    own = [name for name, s in samples.items() if s.energy_gev is not None]
    if own and len(own) < len(samples):
        raise FluxError(f"only {' and '.join(own)} carry the network energy: estimate every sample's alike")
    energy = {name: correction.energy_gev(s.deposit_mev) if s.energy_gev is None else s.energy_gev
              for name, s in samples.items()}  # fmt: skip
    points, bins = [], []
    for lo, hi in zip(bins_gev[:-1], bins_gev[1:], strict=True):
        in_bin = {name: picked[name] & (energy[name] >= lo) & (energy[name] < hi) for name in picked}
        e_scores = electrons.score[in_bin["electrons"]]
        if len(e_scores) < 10:
            raise FluxError(f"bin {lo:g}-{hi:g} GeV: {len(e_scores)} electron MC events; simulate more")
        cut = cut_for_efficiency(e_scores, target_efficiency)
        control = float(np.quantile(e_scores, CONTROL_ELECTRON_SHARE))
        f_scores, p_scores = flight.score[in_bin["flight"]], protons.score[in_bin["protons"]] + proton_shift
        shift, shift_err = proton_shift, 0.0
        if fit_proton_shift and len(f_scores) and len(p_scores):
            fitted, shift_err = fit_template_shift(f_scores, p_scores, e_scores)
            p_scores, shift = p_scores + fitted, shift + fitted
        acc, acc_err = acceptance(
            float(in_bin["electrons"].sum()),
            generated_in_bin(electron_generation, lo, hi),
            GENERATION_GEOMETRIC_FACTOR_M2SR,
        )
        counts = BinCounts(
            e_low=float(lo),
            e_high=float(hi),
            cut=cut,
            n_data_above=float((f_scores > cut).sum()),
            n_data_control=float((f_scores < control).sum()),
            n_e_mc=float(len(e_scores)),
            n_e_mc_above=float((e_scores > cut).sum()),
            n_p_mc_above=float((p_scores > cut).sum()),
            n_p_mc_control=float((p_scores < control).sum()),
            acceptance_m2sr=acc,
            acceptance_err=acc_err,
        )
        points.append(flux_point(counts, live_time_s))
        bins.append(
            BinScores(
                float(lo),
                float(hi),
                cut,
                control,
                f_scores,
                e_scores,
                p_scores,
                counts.proton_norm,
                shift,
                shift_err,
            )
        )
    return FluxMeasurement(
        points, correction, bins, energy["electrons"][e_sel], electrons.true_energy_gev[e_sel], bool(own)
    )
