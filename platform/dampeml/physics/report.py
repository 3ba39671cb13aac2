"""The flux's outputs: a table (Markdown, CSV), the E^3-weighted flux with its errors, the inputs that
made it (bins, cuts, energy correction), each bin's score distributions (flight against the MC
normalised as the background estimate normalises them: the seed's Data/MC plots) and the energy
resolution of the selected electron MC, in one folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from dampeml.physics.energy import resolution
from dampeml.physics.flux import FluxPoint
from dampeml.physics.measure import BinScores, FluxMeasurement

#: bins of a score plot (scores are probabilities or zeta-like: the range is taken from the data)
SCORE_BINS = 40
#: most bins drawn in the score figure (evenly picked over the energy range)
MAX_SCORE_PANELS = 6


def write_flux(
    measurement: FluxMeasurement,
    out: Path,
    settings: dict,
    injected: list[float] | None = None,
) -> Path:
    """flux.md, flux.csv, flux.json, flux.png, scores.png and energy.png in `out` (`injected`: a known
    flux per bin, e.g. a closure's, drawn and tabulated beside); returns flux.md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    points, correction = measurement.points, measurement.correction
    rows = [p.as_dict() | ({"injected": injected[i]} if injected else {}) for i, p in enumerate(points)]
    (out / "flux.json").write_text(
        json.dumps(
            {"settings": settings, "energy_correction": correction.as_dict(), "points": rows}, indent=2
        )
    )
    with (out / "flux.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    e = np.array([p.e_mean for p in points])
    f3 = np.array([p.flux for p in points]) * e**3
    err3 = np.array([p.flux_err for p in points]) * e**3
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.errorbar(e, f3, yerr=err3, fmt="o", label="measured (statistical errors)")
    if injected:
        ax.plot(e, np.asarray(injected) * e**3, "k--", label="injected")
    ax.set_xscale("log")
    ax.set_xlabel("E (GeV)")
    ax.set_ylabel("E$^3$ flux (GeV$^2$ m$^{-2}$ s$^{-1}$ sr$^{-1}$)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "flux.png", dpi=110)
    plt.close(fig)
    lines = ["# Electron flux (cut and count)", "", *(f"- {k}: {v}" for k, v in settings.items()), "",
             "![flux](flux.png)", "", *flux_table(points, injected)]  # fmt: skip
    _score_figure(measurement.bins, points, out / "scores.png")
    lines += ["", "## Score distributions", "",
              "Flight-like events against the electron MC scaled to the measured counts and the proton MC "
              "scaled by the background estimate's normalisation (dashed: the cut; dotted: the control "
              "region's edge).", "", "![scores](scores.png)"]  # fmt: skip
    lines += _energy_section(measurement, out / "energy.png", [(p.e_low, p.e_high) for p in points])
    path = out / "flux.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def flux_table(points: list[FluxPoint], injected: list[float] | None = None) -> list[str]:
    """The flux points as a Markdown table (E^3-weighted), with the injected flux and pulls when known."""
    head = "| E (GeV) | cut | efficiency | background | counts | E^3 flux | stat. error |" + (
        " injected E^3 flux | pull |" if injected else ""
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for i, p in enumerate(points):
        e3 = p.e_mean**3
        cells = [f"{p.e_low:.0f}-{p.e_high:.0f}", f"{p.cut:.3g}", f"{p.efficiency:.3f}",
                 f"{p.background:.3f}", f"{p.counts:.1f}", f"{p.flux * e3:.4g}",
                 f"{p.flux_err * e3:.2g}"]  # fmt: skip
        if injected:
            cells += [f"{injected[i] * e3:.4g}", f"{(p.flux - injected[i]) / p.flux_err:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _score_figure(bins: list[BinScores], points: list[FluxPoint], path: Path) -> None:
    import matplotlib.pyplot as plt

    idx = np.unique(np.linspace(0, len(bins) - 1, min(len(bins), MAX_SCORE_PANELS)).astype(int))
    picked = [(bins[i], points[i]) for i in idx]
    cols = min(3, len(picked))
    rows = (len(picked) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, (b, point) in zip(axes.ravel(), picked, strict=False):
        all_scores = np.concatenate([b.flight, b.electrons, b.protons])
        edges = np.linspace(all_scores.min(), all_scores.max(), SCORE_BINS + 1)
        n_flight, _ = np.histogram(b.flight, edges)
        n_p, _ = np.histogram(b.protons, edges)
        n_e, _ = np.histogram(b.electrons, edges)
        p_scaled = n_p * b.proton_norm
        e_scaled = n_e * max(point.counts, 0.0) / len(b.electrons)  # the measured electrons, before the cut
        centres = 0.5 * (edges[1:] + edges[:-1])
        ax.step(centres, p_scaled, where="mid", color="tab:red", label="proton MC")
        ax.step(centres, e_scaled, where="mid", color="tab:blue", label="electron MC")
        ax.step(centres, p_scaled + e_scaled, where="mid", color="k", lw=0.8, label="MC sum")
        ax.errorbar(centres, n_flight, yerr=np.sqrt(n_flight), fmt="k.", ms=3, label="flight-like")
        ax.axvline(b.cut, color="k", ls="--", lw=0.8)
        ax.axvline(b.control_below, color="k", ls=":", lw=0.8)
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5)
        ax.set_title(f"{b.e_low:.0f}-{b.e_high:.0f} GeV", fontsize=9)
        ax.set_xlabel("score")
    for ax in axes.ravel()[len(picked) :]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _energy_section(m: FluxMeasurement, path: Path, bins: list[tuple[float, float]]) -> list[str]:
    """Bias and resolution of the corrected energy of the selected electron MC, per bin of true energy."""
    import matplotlib.pyplot as plt

    rows = []
    for lo, hi in bins:
        sel = (m.electron_true_gev >= lo) & (m.electron_true_gev < hi)
        if sel.sum() >= 10:
            rows.append(
                (lo, hi, int(sel.sum()), *resolution(m.electron_energy_gev[sel], m.electron_true_gev[sel]))
            )
    origin = (
        "The energy network's estimate."
        if m.own_energy
        else "The standard estimate; its correction is fitted on these events."
    )
    lines = ["", "## Energy (selected electron MC)", "", "Bias: median of E/E_true - 1; resolution: half the "
             f"16-84% width of it. {origin}", "", "![energy](energy.png)", "",
             "| E_true (GeV) | events | bias | resolution |", "|---|---|---|---|"]  # fmt: skip
    lines += [f"| {lo:.0f}-{hi:.0f} | {n} | {b:+.2%} | {r:.2%} |" for lo, hi, n, b, r in rows]
    if rows:
        e = np.sqrt([r[0] * r[1] for r in rows])
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        ax.plot(e, [100 * r[3] for r in rows], "o-", label="bias")
        ax.plot(e, [100 * r[4] for r in rows], "s-", label="resolution")
        ax.axhline(0, color="k", lw=0.5)
        save_log_x(fig, ax, path, "E_true (GeV)", "%")
    return lines


def save_log_x(fig, ax, path: Path, xlabel: str, ylabel: str) -> None:
    """An energy figure finished (log x, labels, legend) and written to `path`."""
    import matplotlib.pyplot as plt

    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
