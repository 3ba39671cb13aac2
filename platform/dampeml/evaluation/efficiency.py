"""Track efficiency as the paper's Table 2 defines it (section 7), pure numpy.

In each kinetic-energy bin the STK charge along the *true* track defines, per particle,
the window holding 85% (95%) of its peak: the shortest interval containing that fraction
of the events with a measured charge (the peak's highest-density region, so the Landau
tail and interactions fall outside). A method's efficiency is the number of events whose
charge along the method's track falls in the same window, divided by the number whose
charge along the true track does. A method without a track (NaN) counts as a miss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dampeml.geometry import Z_TOP

#: The paper's Table 2 kinetic-energy bins, GeV (0.056-0.1, 0.562-1, 5.62-10, 56.2-100, 562-1000 TeV).
PAPER_ENERGY_BINS: tuple[tuple[float, float], ...] = (
    (56.2, 100.0),
    (562.0, 1000.0),
    (5620.0, 1.0e4),
    (56230.0, 1.0e5),
    (562340.0, 1.0e6),
)
CONTAINMENTS: tuple[float, ...] = (0.85, 0.95)

#: Paper Table 2, % (85% window, 95% window) per bin above: standard reconstruction with the
#: standard and with the ideal selection, and the CNN chain; and Table 3: option (a), the
#: standard reconstruction seeded by the calorimeter CNN ("... bgo seed"), and option (b), the
#: two-step tracker CNNs seeded by the shower-axis fit ("tracker cnns, axis seed"). For
#: side-by-side comparisons.
PAPER_TABLE2: dict[str, dict[str, tuple[tuple[float, float], ...]]] = {
    "proton": {
        "standard": ((75.4, 76.0), (77.2, 77.6), (79.4, 80.7), (73.3, 78.2), (21.5, 30.9)),
        "ideal": ((96.0, 96.7), (97.6, 97.8), (97.6, 97.7), (97.4, 98.1), (71.9, 73.6)),
        "cnn": ((98.6, 98.9), (98.8, 98.9), (99.4, 99.5), (98.9, 99.1), (96.4, 96.9)),
        "standard, bgo seed": ((76.4, 77.2), (77.5, 77.9), (80.5, 82.1), (76.3, 80.3), (52.3, 64.3)),
        "ideal, bgo seed": ((97.1, 97.8), (98.1, 98.3), (98.8, 99.0), (98.7, 99.2), (98.0, 98.7)),
        "tracker cnns, axis seed": ((98.1, 98.4), (99.1, 99.1), (99.2, 99.3), (98.7, 99.0), (76.3, 83.3)),
    },
    "helium": {
        "standard": ((84.4, 80.8), (88.7, 85.7), (90.2, 88.2), (91.7, 89.7), (37.4, 38.4)),
        "ideal": ((96.1, 95.7), (97.7, 97.1), (96.3, 96.4), (96.1, 96.3), (51.3, 56.1)),
        "cnn": ((99.0, 98.3), (99.3, 99.2), (99.7, 99.7), (99.7, 99.7), (96.8, 97.3)),
        "standard, bgo seed": ((88.6, 84.6), (89.2, 86.2), (91.7, 90.6), (92.9, 91.4), (92.4, 90.9)),
        "ideal, bgo seed": ((96.3, 95.8), (98.2, 97.9), (98.2, 98.2), (98.0, 98.3), (95.4, 96.3)),
        "tracker cnns, axis seed": ((98.0, 97.4), (99.3, 99.2), (99.5, 99.5), (99.5, 99.5), (65.3, 70.7)),
    },
}


def containment_window(charge: np.ndarray, fraction: float) -> tuple[float, float]:
    """Shortest interval holding `fraction` of the finite charges; (nan, nan) if there are none."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"containment fraction must be in (0, 1], got {fraction}")
    q = np.sort(np.asarray(charge, dtype=np.float64)[np.isfinite(charge)])
    if len(q) == 0:
        return float("nan"), float("nan")
    k = max(int(np.ceil(fraction * len(q))), 1)
    widths = q[k - 1 :] - q[: len(q) - k + 1]
    i = int(np.argmin(widths))
    return float(q[i]), float(q[i + k - 1])


def in_window(charge: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """True where the charge lies inside [lo, hi] (NaN never does)."""
    c = np.asarray(charge, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (c >= window[0]) & (c <= window[1])


def table2_masks(true_inelastic: np.ndarray, true_interaction_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask, peak_mask) of `efficiency_table` as Table 2 counts: every event but those whose primary
    interacted before the tracker (in the PSD, where no method can find its track), the windows on the
    clean peak (no inelastic interaction before the BGO)."""
    inelastic = np.asarray(true_inelastic, dtype=bool)
    return ~(inelastic & (np.asarray(true_interaction_z) < Z_TOP)), ~inelastic


def efficiency_table(
    particle: np.ndarray | str,
    energy: np.ndarray,
    true_charge: np.ndarray,
    method_charges: Mapping[str, np.ndarray],
    energy_bins: Sequence[tuple[float, float]] = PAPER_ENERGY_BINS,
    containments: Sequence[float] = CONTAINMENTS,
    mask: np.ndarray | None = None,
    peak_mask: np.ndarray | None = None,
) -> list[dict]:
    """Table 2 rows: one per (particle, energy bin, containment, method).

    `particle` is a per-event array of names (or one name for all), `energy` the kinetic
    energy (GeV), `true_charge` the STK charge along the true track, `method_charges`
    the charge along each method's track (NaN where it has none), `mask` an optional
    event selection (e.g. no interaction in the PSD), `peak_mask` the events whose true-track
    charge defines the windows (e.g. no inelastic interaction before the BGO: the clean peak
    of Fig. 2; by default every selected event, so a tail of interacting events above a few
    % stretches the 95% window). Each row: particle, e_min, e_max,
    containment, window_lo, window_hi, method, n_true (events in the window with the true
    track), n_method, efficiency (n_method / n_true, NaN if n_true = 0) and its binomial error.
    """
    energy = np.asarray(energy, dtype=np.float64)
    n = len(energy)
    names = np.full(n, particle) if isinstance(particle, str) else np.asarray(particle)
    true_charge = np.asarray(true_charge, dtype=np.float64)
    for name, arr in [("particle", names), ("true_charge", true_charge), *method_charges.items()]:
        if len(arr) != n:
            raise ValueError(f"{name} has {len(arr)} entries, energy has {n}: one per event needed")
    sel = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    peak = np.ones(n, dtype=bool) if peak_mask is None else np.asarray(peak_mask, dtype=bool)
    if len(sel) != n or len(peak) != n:
        raise ValueError(f"mask and peak_mask need one entry per event ({n})")
    rows = []
    for p in dict.fromkeys(names.tolist()):
        for e_min, e_max in energy_bins:
            ev = sel & (names == p) & (energy >= e_min) & (energy < e_max)
            for frac in containments:
                window = containment_window(true_charge[ev & peak], frac)
                ok_true = ev & in_window(true_charge, window)
                n_true = int(ok_true.sum())
                for method, charge in method_charges.items():
                    n_m = int((ev & in_window(charge, window)).sum())
                    eff = n_m / n_true if n_true else float("nan")
                    err = float(np.sqrt(max(eff * (1 - eff), 0.0) / n_true)) if n_true else float("nan")
                    rows.append(
                        {
                            "particle": p,
                            "e_min": e_min,
                            "e_max": e_max,
                            "containment": frac,
                            "window_lo": window[0],
                            "window_hi": window[1],
                            "method": method,
                            "n_events": int(ev.sum()),
                            "n_true": n_true,
                            "n_method": n_m,
                            "efficiency": eff,
                            "error": err,
                        }
                    )
    return rows


def format_table(rows: Sequence[Mapping], paper: bool = True) -> str:
    """Rows as a Markdown table (efficiencies in %), with the paper's Table 2 figure beside ours."""
    head = "| particle | E (TeV) | window | method | efficiency (%) | paper (%) | n_true |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = paper_value(r["particle"], r["method"], r["e_min"], r["e_max"], r["containment"])
        ref_s = f"{ref:.1f}" if paper and ref is not None else "-"
        eff = r["efficiency"]
        eff_s = f"{100 * eff:.1f} ± {100 * r['error']:.1f}" if np.isfinite(eff) else "-"
        lines.append(
            f"| {r['particle']} | {r['e_min'] / 1e3:g}-{r['e_max'] / 1e3:g} | {r['containment']:.0%} "
            f"| {r['method']} | {eff_s} | {ref_s} | {r['n_true']} |"
        )
    return "\n".join(lines)


def paper_value(particle: str, method: str, e_min: float, e_max: float, containment: float) -> float | None:
    """The paper's Table 2 efficiency (%) for this row, None where the paper has no such cell."""
    table = PAPER_TABLE2.get(particle, {}).get(method.split(" (")[0])  # "cnn (reference)": the cnn row
    if table is None or containment not in CONTAINMENTS:
        return None
    for (lo, hi), vals in zip(PAPER_ENERGY_BINS, table, strict=True):
        if np.isclose(lo, e_min, rtol=1e-3) and np.isclose(hi, e_max, rtol=1e-3):
            return vals[CONTAINMENTS.index(containment)]
    return None
