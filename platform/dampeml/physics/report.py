"""The flux's outputs: a table (Markdown, CSV), the E^3-weighted flux with its errors, and the inputs
that made it (bins, cuts, energy correction), in one folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from dampeml.physics.energy import EnergyCorrection
from dampeml.physics.flux import FluxPoint


def write_flux(
    points: list[FluxPoint],
    correction: EnergyCorrection,
    out: Path,
    settings: dict,
    injected: list[float] | None = None,
) -> Path:
    """flux.md, flux.csv, flux.json and flux.png in `out` (`injected`: a known flux per bin, e.g. a
    closure's, drawn and tabulated beside); returns flux.md."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
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
    head = "| E (GeV) | cut | efficiency | background | counts | E^3 flux | stat. error |" + (
        " injected E^3 flux | pull |" if injected else ""
    )
    lines = ["# Electron flux (cut and count)", "", *(f"- {k}: {v}" for k, v in settings.items()), "",
             "![flux](flux.png)", "", head, "|" + "---|" * (head.count("|") - 1)]  # fmt: skip
    for i, p in enumerate(points):
        cells = [f"{p.e_low:.0f}-{p.e_high:.0f}", f"{p.cut:.3g}", f"{p.efficiency:.3f}",
                 f"{p.background:.3f}", f"{p.counts:.1f}", f"{f3[i]:.4g}", f"{err3[i]:.2g}"]  # fmt: skip
        if injected:
            cells += [f"{injected[i] * e[i] ** 3:.4g}", f"{(p.flux - injected[i]) / p.flux_err:+.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    path = out / "flux.md"
    path.write_text("\n".join(lines) + "\n")
    return path
