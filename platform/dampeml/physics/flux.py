"""The cut-and-count flux of seed 001, per energy bin, with statistical errors.

In each bin of reconstructed energy, with a cut on the classifier score:
- efficiency: eff = N_e^MC(score > cut) / N_e^MC, electron MC of the same selection;
- proton MC normalised to the flight counts in a proton-dominated control region of the score
  (score < `control_below`): norm = N_data(control) / N_p^MC(control);
- background fraction: bkg = norm N_p^MC(score > cut) / N_data(score > cut);
- counts = (1 - bkg) N_data(score > cut) / eff;
- flux = counts / (acceptance x live time x bin width), acceptance from the electron MC (the
  generation's geometric factor times the selected share of what was generated in the bin).
Statistical errors: Poisson on the flight counts above the cut and in the control region, binomial
on the efficiency, Poisson on the proton MC above the cut and in the control region (propagated to
first order, independent); the acceptance's MC error is added the same way.

The cut per bin (a stated rule, `cut_for_efficiency`): the score above which `target` of the bin's
electron MC lies (90% by default, the efficiency at which the seed quotes proton rejection).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from dampeml.errors import InputError


class FluxError(InputError):
    """Inputs a flux cannot be computed from (a bin without MC, mismatched bins)."""


@dataclass(frozen=True)
class BinCounts:
    """What one energy bin's flux is made of (counts as floats: MC may be weighted)."""

    e_low: float  # GeV
    e_high: float
    cut: float
    n_data_above: float  # flight events passing the selection with score > cut
    n_data_control: float  # ... with score < control_below
    n_e_mc: float  # electron MC passing the selection (before the score cut)
    n_e_mc_above: float
    n_p_mc_above: float
    n_p_mc_control: float
    acceptance_m2sr: float
    acceptance_err: float = 0.0

    @property
    def proton_norm(self) -> float:
        """The proton MC's scale to the flight counts: N_data(control) / N_p^MC(control) (0 without)."""
        return self.n_data_control / self.n_p_mc_control if self.n_p_mc_control > 0 else 0.0


@dataclass(frozen=True)
class FluxPoint:
    e_low: float
    e_high: float
    e_mean: float  # the bin's log-centre (GeV)
    cut: float
    efficiency: float
    background: float
    counts: float
    flux: float  # per (m2 s sr GeV)
    flux_err: float

    def as_dict(self) -> dict:
        return asdict(self)


def cut_for_efficiency(electron_scores: np.ndarray, target: float = 0.9) -> float:
    """The score above which a share `target` of the electron MC lies."""
    s = np.asarray(electron_scores, dtype=np.float64)
    if not len(s):
        raise FluxError("no electron MC in the bin: the cut cannot be set")
    return float(np.quantile(s, 1.0 - target))


def flux_point(b: BinCounts, live_time_s: float) -> FluxPoint:
    """One bin's flux and its statistical error (module docstring)."""
    if b.n_e_mc <= 0 or b.n_e_mc_above <= 0:
        raise FluxError(f"bin {b.e_low:g}-{b.e_high:g} GeV: no electron MC above the cut")
    if b.n_p_mc_control <= 0 and b.n_p_mc_above > 0:
        raise FluxError(f"bin {b.e_low:g}-{b.e_high:g} GeV: no proton MC in the control region to normalise")
    if b.acceptance_m2sr <= 0 or live_time_s <= 0:
        raise FluxError("acceptance and live time must be > 0")
    eff = b.n_e_mc_above / b.n_e_mc
    background_events = b.proton_norm * b.n_p_mc_above
    signal = b.n_data_above - background_events
    bkg = background_events / b.n_data_above if b.n_data_above > 0 else 0.0
    counts = signal / eff
    width = b.e_high - b.e_low
    exposure = b.acceptance_m2sr * live_time_s * width
    # first-order errors, independent sources; relative terms of the background are those of norm x N
    var_bkg = 0.0
    if background_events > 0:
        rel2 = sum(1.0 / n for n in (b.n_data_control, b.n_p_mc_control, b.n_p_mc_above) if n > 0)
        var_bkg = background_events**2 * rel2
    var_signal = b.n_data_above + var_bkg
    var_eff = eff * (1.0 - eff) / b.n_e_mc
    var_counts = var_signal / eff**2 + (signal / eff**2) ** 2 * var_eff
    flux = counts / exposure
    var_flux = var_counts / exposure**2 + (flux * b.acceptance_err / b.acceptance_m2sr) ** 2
    return FluxPoint(
        b.e_low,
        b.e_high,
        float(np.sqrt(b.e_low * b.e_high)),
        b.cut,
        eff,
        bkg,
        counts,
        flux,
        float(np.sqrt(var_flux)),
    )


def generated_in_bin(
    n_generated: float, e_min: float, e_max: float, index: float, lo: float, hi: float
) -> float:
    """Of `n_generated` primaries drawn with dN/dE ~ E^-index on [e_min, e_max], how many fall in [lo, hi]."""
    lo, hi = max(lo, e_min), min(hi, e_max)
    if hi <= lo:
        return 0.0

    def integral(a: float, b: float) -> float:
        return (
            np.log(b / a) if abs(index - 1.0) < 1e-12 else (b ** (1 - index) - a ** (1 - index)) / (1 - index)
        )

    return n_generated * integral(lo, hi) / integral(e_min, e_max)


def acceptance(
    n_selected: float, n_generated_in_bin: float, geometric_factor_m2sr: float
) -> tuple[float, float]:
    """(acceptance, its binomial error) in m2 sr: the generation's geometric factor times the share
    of the bin's generated primaries that were selected."""
    if n_generated_in_bin <= 0:
        raise FluxError("no generated events in the bin: the acceptance is unknown")
    p = n_selected / n_generated_in_bin
    return geometric_factor_m2sr * p, geometric_factor_m2sr * float(np.sqrt(p * (1 - p) / n_generated_in_bin))


def pulls(points: list[FluxPoint], expected: np.ndarray) -> tuple[np.ndarray, float]:
    """(pull per bin, chi2) of measured fluxes against the expected ones (e.g. the injected spectrum
    integrated over each bin and divided by its width)."""
    f = np.array([p.flux for p in points])
    e = np.array([p.flux_err for p in points])
    pull = (f - np.asarray(expected, dtype=np.float64)) / e
    return pull, float(np.sum(pull**2))
