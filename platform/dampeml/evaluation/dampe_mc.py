"""The electron/proton shower variables of DAMPE's own simulation, and how the fast simulation's compare.

What we compare with: the boosted decision trees of DAMPE's electron-flux analysis eFlux (E. Catanzani,
public code on GitHub, `Classifier/Reader/trainedBDT/<bin>/TMVAClassification_BDT.weights.xml`), trained
on DAMPE's official Geant4 simulation of electrons and protons (78,000-313,000 events per bin, the two
classes weighted equal) in six bins of the electron-hypothesis energy. The first tree of each forest is
grown on the training sample before any boosting, and TMVA records every node's purity, so each leaf's
share of the electrons and of the protons follows from the purities along its path
(`scripts/tmva_leaves.py` derives this table from the files). Each leaf is a region of two or three of
the analysis's shower variables: the energy fraction of one of the last layers, the sum of the layers'
RMS widths, zeta (`xtrl`). A simulation that puts its electrons and protons into these regions in
DAMPE's shares has DAMPE's shower-to-shower variety where the classifiers look first; one that puts
fewer protons into the electrons' region is easier to classify than DAMPE.

The variables are computed as that analysis computes them (`dampe_variables`): a layer's RMS is taken
about the core (the centre of gravity of its hottest bar and the two beside it), a layer with one bar
has RMS 0, and events with any layer's RMS or energy at 0 are left out of the training sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dampeml import geometry as geo
from dampeml.features.shower_variables import ZETA_SCALE
from dampeml.physics.energy import EnergyCorrection, fit_correction
from dampeml.physics.samples import sample_from_events
from dampeml.physics.selection import FIDUCIAL, containment


@dataclass(frozen=True)
class Leaf:
    """A region of shower variables ((name, '<' or '>=', cut), all to hold) and DAMPE's MC shares."""

    conditions: tuple[tuple[str, str, float], ...]
    electrons: float
    protons: float

    def label(self) -> str:
        return " & ".join(f"{name} {op} {cut:.4g}" for name, op, cut in self.conditions)


#: Energy bins (GeV of the electron-hypothesis energy) of the analysis's forests; the last is open
#: above (simulated up to ENERGY_CAP_GEV).
ENERGY_BINS = {
    "10-100": (10.0, 100.0),
    "100-250": (100.0, 250.0),
    "250-500": (250.0, 500.0),
    "500-1000": (500.0, 1000.0),
    "1000-3000": (1000.0, 3000.0),
    ">3000": (3000.0, np.inf),
}
ENERGY_CAP_GEV = 10_000.0

#: The first tree's leaves in each bin, with the shares of DAMPE's simulated electrons and protons.
LEAVES: dict[str, tuple[Leaf, ...]] = {
    "10-100": (
        Leaf((("fraclayer_11", "<", 0.01102), ("rmslayer_3", "<", 23.98)), 0.9220, 0.0541),
        Leaf((("fraclayer_11", "<", 0.01102), ("rmslayer_3", ">=", 23.98)), 0.0175, 0.1080),
        Leaf((("fraclayer_11", ">=", 0.01102), ("sumRms", "<", 454.1)), 0.0553, 0.0200),
        Leaf((("fraclayer_11", ">=", 0.01102), ("sumRms", ">=", 454.1)), 0.0051, 0.8179),
    ),
    "100-250": (
        Leaf((("fraclayer_12", "<", 0.01398), ("fraclayer_13", "<", 0.006102)), 0.9659, 0.0367),
        Leaf((("fraclayer_12", "<", 0.01398), ("fraclayer_13", ">=", 0.006102)), 0.0123, 0.0884),
        Leaf((("fraclayer_12", ">=", 0.01398),), 0.0218, 0.8749),
    ),
    "250-500": (
        Leaf((("fraclayer_12", "<", 0.01435), ("fraclayer_13", "<", 0.004592)), 0.8771, 0.0099),
        Leaf(
            (("fraclayer_12", "<", 0.01435), ("fraclayer_13", ">=", 0.004592), ("sumRms", "<", 452.2)),
            0.0815,
            0.0055,
        ),  # fmt: skip
        Leaf(
            (("fraclayer_12", "<", 0.01435), ("fraclayer_13", ">=", 0.004592), ("sumRms", ">=", 452.2)),
            0.0011,
            0.0774,
        ),  # fmt: skip
        Leaf((("fraclayer_12", ">=", 0.01435), ("sumRms", "<", 381.3)), 0.0379, 0.0165),
        Leaf((("fraclayer_12", ">=", 0.01435), ("sumRms", ">=", 381.3)), 0.0025, 0.8907),
    ),
    "500-1000": (
        Leaf((("fraclayer_12", "<", 0.01365), ("fraclayer_14", "<", 0.004964)), 0.9127, 0.0275),
        Leaf((("fraclayer_12", "<", 0.01365), ("fraclayer_14", ">=", 0.004964)), 0.0010, 0.0630),
        Leaf((("fraclayer_12", ">=", 0.01365), ("sumRms", "<", 361.1)), 0.0654, 0.0153),
        Leaf((("fraclayer_12", ">=", 0.01365), ("sumRms", ">=", 361.1)), 0.0210, 0.8942),
    ),
    "1000-3000": (
        Leaf((("fraclayer_13", "<", 0.01644), ("xtrl", "<", 49.1)), 0.9693, 0.0228),
        Leaf((("fraclayer_13", "<", 0.01644), ("xtrl", ">=", 49.1)), 0.0008, 0.0563),
        Leaf((("fraclayer_13", ">=", 0.01644),), 0.0299, 0.9209),
    ),
    ">3000": (
        Leaf((("fraclayer_14", "<", 0.01663), ("xtrl", "<", 24.58)), 0.9552, 0.0055),
        Leaf((("fraclayer_14", "<", 0.01663), ("xtrl", ">=", 24.58)), 0.0202, 0.0765),
        Leaf((("fraclayer_14", ">=", 0.01663),), 0.0246, 0.9180),
    ),
}


def dampe_variables(bgo_energy: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The analysis's shower variables of (N, 14, 22) bar energies (MeV), by its names (rmslayer_1..14,
    fraclayer_1..14, sumRms, fracLast, xtrl), and (N,) which events its training sample keeps (every
    layer with an RMS and an energy above 0)."""
    e = np.asarray(bgo_energy, dtype=np.float64)
    n, n_layers, n_bars = e.shape
    x = geo.BGO_BAR_CENTRES
    e_layer = e.sum(axis=2)
    hottest = e.argmax(axis=2)
    near = np.abs(np.arange(n_bars)[None, None, :] - hottest[..., None]) <= 1
    e_core = np.where(near, e, 0.0)
    core = np.divide(
        e_core @ x, e_core.sum(axis=2), out=np.zeros((n, n_layers)), where=e_core.sum(axis=2) > 0
    )
    spread = np.einsum("nlb,nlb->nl", e, (x[None, None, :] - core[..., None]) ** 2)
    rms = np.sqrt(np.divide(spread, e_layer, out=np.zeros((n, n_layers)), where=e_layer > 0))
    rms = np.where((e > 0).sum(axis=2) <= 1, 0.0, rms)
    total = e_layer.sum(axis=1, keepdims=True)
    frac = np.divide(e_layer, total, out=np.zeros_like(e_layer), where=total > 0)
    out = {f"rmslayer_{i + 1}": rms[:, i] for i in range(n_layers)}
    out |= {f"fraclayer_{i + 1}": frac[:, i] for i in range(n_layers)}
    out |= {"sumRms": rms.sum(axis=1), "fracLast": frac[:, -1]}
    out["xtrl"] = out["fracLast"] * out["sumRms"] ** 4 / ZETA_SCALE
    kept = np.all(rms > 0, axis=1) & np.all(frac > 0, axis=1)
    return out, kept


@dataclass(frozen=True)
class AnalysisSample:
    """Simulated events as the analysis sees them: its variables, which events its training sample would
    hold (a fiducial standard shower axis, as `dampeml flux` selects, and no empty layer), the deposit
    (MeV) and the true energy (GeV)."""

    variables: dict[str, np.ndarray]
    kept: np.ndarray
    deposit_mev: np.ndarray
    true_energy_gev: np.ndarray

    @classmethod
    def from_events(cls, events: dict) -> AnalysisSample:
        variables, clean = dampe_variables(np.asarray(events["bgo_energy"]))
        s = sample_from_events(events)
        return cls(variables, clean & (containment(s.axis) == FIDUCIAL), s.deposit_mev, s.true_energy_gev)

    def correction(self) -> EnergyCorrection:
        """The electron-hypothesis energy correction fitted on these (electron) events."""
        return fit_correction(self.deposit_mev[self.kept], self.true_energy_gev[self.kept])

    def in_bin(self, bin_name: str, correction: EnergyCorrection) -> dict[str, np.ndarray]:
        """The variables of the kept events whose electron-hypothesis energy lies in an ENERGY_BINS bin."""
        lo, hi = ENERGY_BINS[bin_name]
        energy = correction.energy_gev(self.deposit_mev)
        chosen = self.kept & (energy >= lo) & (energy < hi)
        return {name: x[chosen] for name, x in self.variables.items()}


def in_leaf(variables: dict[str, np.ndarray], leaf: Leaf) -> np.ndarray:
    """(N,) which events lie in the leaf's region."""
    inside = np.ones(len(next(iter(variables.values()))), dtype=bool)
    for name, op, cut in leaf.conditions:
        inside &= variables[name] < cut if op == "<" else variables[name] >= cut
    return inside


def leaf_shares(variables: dict[str, np.ndarray], leaves: tuple[Leaf, ...]) -> np.ndarray:
    """(len(leaves),) share of the events in each leaf (the leaves tile the space: they sum to 1)."""
    n = max(len(next(iter(variables.values()))), 1)
    return np.array([in_leaf(variables, leaf).sum() / n for leaf in leaves])


def gini_gain(e_left: float, p_left: float) -> float:
    """How much a cut purifies equally weighted electrons and protons (TMVA's Gini criterion): the parent's
    Gini index 0.25 less its children's, when the cut sends shares e_left and p_left of the electrons and
    protons to one side. 0.25 separates them completely; 0 not at all."""

    def gini(e: float, p: float) -> float:
        return 0.0 if e + p == 0 else e * p / (2.0 * (e + p))

    return 0.25 - gini(e_left, p_left) - gini(1.0 - e_left, 1.0 - p_left)


def root_gain(leaves: tuple[Leaf, ...]) -> tuple[str, float]:
    """The first split of the tree the leaves come from, and its Gini gain on DAMPE's simulation: the best
    single cut the analysis's training found (every variable, 20 cuts each), so no single cut of its
    variables separates DAMPE's simulated electrons and protons much better."""
    first = leaves[0].conditions[0]
    left = [leaf for leaf in leaves if leaf.conditions[0] == first]
    label = f"{first[0]} {first[1]} {first[2]:.4g}"
    return label, gini_gain(sum(leaf.electrons for leaf in left), sum(leaf.protons for leaf in left))


def best_single_cut(
    electrons: dict[str, np.ndarray], protons: dict[str, np.ndarray], n_cuts: int = 20
) -> tuple[str, float, float]:
    """The single cut (variable, value) that best separates the two samples by `gini_gain`, searched as
    TMVA does (n_cuts values evenly spaced inside each variable's range), and its gain."""
    best = ("", np.nan, -1.0)
    for name, e in electrons.items():
        p = protons[name]
        lo, hi = min(e.min(), p.min()), max(e.max(), p.max())
        for cut in lo + (hi - lo) * np.arange(1, n_cuts + 1) / (n_cuts + 1):
            gain = gini_gain(float(np.mean(e < cut)), float(np.mean(p < cut)))
            if gain > best[2]:
                best = (name, float(cut), gain)
    return best


#: DAMPE's energy resolution for electrons (sigma / E against GeV), the curve its electron-flux analysis
#: unfolds with (eFlux, `fluxBuilder/assets/DAMPE_energy_resolution.csv`), read at these energies.
ELECTRON_RESOLUTION = (
    (5.0, 0.0214),
    (10.0, 0.0156),
    (20.0, 0.0122),
    (50.0, 0.0104),
    (100.0, 0.0102),
    (300.0, 0.0103),
    (1000.0, 0.0100),
    (3000.0, 0.0092),
    (8000.0, 0.0088),
)


def dampe_resolution(energy_gev: float) -> float:
    """DAMPE's electron energy resolution at an energy (log-interpolated in ELECTRON_RESOLUTION)."""
    e, r = np.array(ELECTRON_RESOLUTION).T
    return float(np.interp(np.log(energy_gev), np.log(e), r))
