"""The flux's inputs side by side on MC (seed 001's comparisons): per energy bin, each electron/proton
score's ROC, its AUC and the proton rejection at a fixed electron efficiency; and per true-energy bin,
the bias and resolution of each energy estimate for fiducial and non-fiducial electrons. What
`dampeml flux-compare` writes, to choose the score and the energy that `dampeml flux` uses.

The score bins are bins of the standard corrected energy, as the flux's; the protons are counted as
the MC generated them (no reweighting to a flux). A rejection with no proton above the cut is a
lower bound: more than the bin's proton count.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dampeml.features.shower_axis import fit_shower_axis
from dampeml.io.root_reader import read_events
from dampeml.physics.energy import EnergyCorrection, fit_correction, resolution
from dampeml.physics.flux import FluxError, cut_for_efficiency
from dampeml.physics.networks import ENERGY_NETWORK, RegisteredNetworks
from dampeml.physics.report import save_log_x
from dampeml.physics.samples import event_score
from dampeml.physics.selection import CLASSES, FIDUCIAL, NON_FIDUCIAL, containment
from dampeml.training.metrics import roc_auc

#: electron efficiencies of the drawn ROC curves
ROC_EFFICIENCIES = np.linspace(0.5, 0.999, 60)
#: fewest events of a class in a bin for its figures to be quoted
MIN_EVENTS = 20


@dataclass
class McEvents:
    """MC events' shower axes, deposits (MeV), true energies (GeV), scores by name and, with the energy
    network, its estimate (GeV)."""

    axis: np.ndarray
    deposit_mev: np.ndarray
    true_energy_gev: np.ndarray
    scores: dict[str, np.ndarray]
    network_energy_gev: np.ndarray | None = None


def read_mc(
    paths: list[str | Path], scores: list[str], networks: RegisteredNetworks, energy_network: bool
) -> McEvents:
    """The events of MC files `paths`, each read once, with every score of `scores`."""
    parts = []
    for path in paths:
        events = read_events(path, branches=["bgo_energy", "true_energy"])
        if "true_energy" not in events:
            raise FluxError(f"{path}: no MC truth (a flight file?): the comparison needs MC files")
        bgo = np.asarray(events["bgo_energy"], dtype=np.float32)
        parts.append(
            McEvents(
                fit_shower_axis(bgo)[0],
                bgo.sum(axis=(1, 2), dtype=np.float64),
                np.asarray(events["true_energy"], dtype=np.float64),
                {s: event_score(s, bgo, networks) for s in scores},
                networks.energy_gev(bgo) if energy_network else None,
            )
        )
    return McEvents(
        np.concatenate([p.axis for p in parts]),
        np.concatenate([p.deposit_mev for p in parts]),
        np.concatenate([p.true_energy_gev for p in parts]),
        {s: np.concatenate([p.scores[s] for p in parts]) for s in scores},
        np.concatenate([p.network_energy_gev for p in parts]) if energy_network else None,
    )


@dataclass(frozen=True)
class ScoreRow:
    e_low: float
    e_high: float
    score: str
    n_electrons: int
    n_protons: int
    auc: float
    cut: float
    protons_above: int
    rejection: float  # 1 / (share of protons above the cut); inf with none above (a lower bound: n_protons)

    @property
    def rejection_text(self) -> str:
        if self.n_protons < MIN_EVENTS:
            return "-"
        return f"> {self.n_protons}" if self.protons_above == 0 else f"{self.rejection:.4g}"


@dataclass(frozen=True)
class EnergyRow:
    e_low: float
    e_high: float
    containment: str
    estimate: str
    n: int
    bias: float
    resolution: float


@dataclass
class Comparison:
    scores: list[ScoreRow]
    energies: list[EnergyRow]
    roc: dict[str, dict[str, list[float]]]  # bin label -> score -> proton survival at ROC_EFFICIENCIES
    correction: EnergyCorrection


def standard_correction(electrons: McEvents) -> EnergyCorrection:
    """The flux's standard correction, from the fiducial electrons."""
    fiducial = containment(electrons.axis) == FIDUCIAL
    return fit_correction(electrons.deposit_mev[fiducial], electrons.true_energy_gev[fiducial])


def compare(
    electrons: McEvents,
    protons: McEvents,
    bins_gev: np.ndarray,
    selection: int = FIDUCIAL,
    efficiency: float = 0.9,
) -> Comparison:
    """Every score per bin of corrected energy, and every energy estimate per bin of true energy."""
    correction = standard_correction(electrons)
    e_energy, p_energy = (correction.energy_gev(s.deposit_mev) for s in (electrons, protons))
    e_sel, p_sel = (containment(s.axis) == selection for s in (electrons, protons))
    rows, roc = [], {}
    for lo, hi in zip(bins_gev[:-1], bins_gev[1:], strict=True):
        e_in = e_sel & (e_energy >= lo) & (e_energy < hi)
        p_in = p_sel & (p_energy >= lo) & (p_energy < hi)
        if e_in.sum() < MIN_EVENTS:
            raise FluxError(f"bin {lo:g}-{hi:g} GeV: {e_in.sum()} electron MC events; simulate more")
        label = f"{lo:.4g}-{hi:.4g} GeV"
        roc[label] = {}
        for name, e_scores in electrons.scores.items():
            e_s, p_s = e_scores[e_in], protons.scores[name][p_in]
            cut = cut_for_efficiency(e_s, efficiency)
            above = int((p_s > cut).sum())
            y = np.concatenate([np.ones(len(e_s)), np.zeros(len(p_s))])
            rows.append(ScoreRow(float(lo), float(hi), name, len(e_s), len(p_s),
                                 roc_auc(y, np.concatenate([e_s, p_s])), cut, above,
                                 len(p_s) / above if above else float("inf")))  # fmt: skip
            cuts = np.quantile(e_s, 1.0 - ROC_EFFICIENCIES)
            roc[label][name] = [float((p_s > c).mean()) if len(p_s) else float("nan") for c in cuts]
    return Comparison(rows, energy_rows(electrons, bins_gev, correction), roc, correction)


def energy_rows(electrons: McEvents, bins_gev: np.ndarray, correction: EnergyCorrection) -> list[EnergyRow]:
    """Bias and resolution of each estimate per true-energy bin, for fiducial and non-fiducial electrons."""
    estimates = {"standard": correction.energy_gev(electrons.deposit_mev)}
    if electrons.network_energy_gev is not None:
        estimates[ENERGY_NETWORK] = electrons.network_energy_gev
    classes = containment(electrons.axis)
    truth = electrons.true_energy_gev
    rows = []
    for lo, hi in zip(bins_gev[:-1], bins_gev[1:], strict=True):
        for cls in (FIDUCIAL, NON_FIDUCIAL):
            sel = (classes == cls) & (truth >= lo) & (truth < hi)
            if sel.sum() < MIN_EVENTS:
                continue
            for name, estimate in estimates.items():
                bias, width = resolution(estimate[sel], truth[sel])
                rows.append(EnergyRow(float(lo), float(hi), CLASSES[cls], name, int(sel.sum()), bias, width))
    return rows


def write_comparison(result: Comparison, out: Path, settings: dict) -> Path:
    """compare.md, compare.json, roc.png and energy.png in `out`; returns compare.md."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps({
        "settings": settings,
        "scores": [asdict(r) | {"rejection": r.rejection_text} for r in result.scores],
        "energies": [asdict(r) for r in result.energies],
        "roc": {"electron_efficiency": ROC_EFFICIENCIES.tolist(), "proton_survival": result.roc},
    }, indent=2))  # fmt: skip
    _roc_figure(result.roc, out / "roc.png")
    lines = ["# Electron/proton scores and energy estimates, side by side on MC", "",
             *(f"- {k}: {v}" for k, v in settings.items()), "", "## Scores", "",
             "| E (GeV) | score | electrons | protons | AUC | protons above the cut | rejection |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in result.scores:
        lines.append(f"| {r.e_low:.4g}-{r.e_high:.4g} | {r.score} | {r.n_electrons} | {r.n_protons} | "
                     f"{r.auc:.5f} | {r.protons_above} | {r.rejection_text} |")  # fmt: skip
    lines += ["", "Proton survival against electron efficiency, per bin:", "", "![roc](roc.png)", ""]
    if result.energies:
        _energy_figure(result.energies, out / "energy.png")
        lines += ["## Energy", "", "Per bin of true energy: bias (median of E/E_true - 1) and resolution "
                  "(half the 16-84% width of E/E_true).", "",
                  "| E_true (GeV) | electrons | estimate | events | bias | resolution |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for r in result.energies:
            lines.append(f"| {r.e_low:.4g}-{r.e_high:.4g} | {r.containment} | {r.estimate} | {r.n} | "
                         f"{r.bias:+.4f} | {r.resolution:.4f} |")  # fmt: skip
        lines += ["", "![energy](energy.png)"]
    path = out / "compare.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _roc_figure(roc: dict[str, dict[str, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(roc), figsize=(3.6 * len(roc), 3.4), squeeze=False)
    for ax, (label, curves) in zip(axes[0], roc.items(), strict=True):
        for name, survival in curves.items():
            y = np.asarray(survival, dtype=float)
            ax.plot(ROC_EFFICIENCIES, np.where(y > 0, y, np.nan), label=name)
        ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("electron efficiency")
    axes[0][0].set_ylabel("proton survival (zero: not drawn)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _energy_figure(rows: list[EnergyRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for cls, style in (("fiducial", "-o"), ("non-fiducial", "--s")):
        for name in dict.fromkeys(r.estimate for r in rows):
            pick = [r for r in rows if r.containment == cls and r.estimate == name]
            if pick:
                e = [np.sqrt(r.e_low * r.e_high) for r in pick]
                ax.plot(e, [100 * r.resolution for r in pick], style, label=f"{name}, {cls}")
    save_log_x(fig, ax, path, "true energy (GeV)", "resolution (%)")
