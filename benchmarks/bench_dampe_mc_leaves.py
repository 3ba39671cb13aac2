"""The simulation's electrons and protons against DAMPE's own simulation, region by region of the shower
variables DAMPE's electron-flux analysis classifies with (`dampeml.evaluation.dampe_mc`).

For each of the analysis's six energy bins, electrons and protons are simulated with the platform's
`simulate` (every version given, on the same seeds), seen as the analysis sees them
(`dampe_mc.AnalysisSample`: the standard shower axis fiducial, as `dampeml flux` selects; no empty
layer), binned in the electron-hypothesis energy (the correction fitted on the bin's own electrons),
and counted in
each leaf of the first tree of the analysis's forest. Printed per leaf: DAMPE's simulated share and
ours (with its binomial error), for electrons and for protons; per bin the total variation distance
(half the summed |difference|, 0 when the shares agree, 1 when no region is shared); and the single
cut that best separates our electrons from our protons (`best_single_cut`: any variable, 20 values each,
TMVA's Gini criterion) beside the tree's first split, the best DAMPE's simulation allowed: a variable
that separates ours much better than that is one whose shower-to-shower variety we lack; and the test
AUC of a linear discriminant on all the variables (half the events to train it). Last, the electrons'
energy resolution with the standard estimate beside DAMPE's published curve (`ELECTRON_RESOLUTION`).

    .venv/bin/python benchmarks/bench_dampe_mc_leaves.py [--versions 3 4] [--electrons 3000]
        [--protons 4000] [--seed 77] [--workers 2]
        [--halo-concentration K] [--core-reach LAMBDAS] [--em-concentration K]
        [--cascade-concentration K] [--generation-gap LAMBDAS] [--bock-profile] [--carrier-mev E]
        [--depth-spread S]
        (studies of version 4; --carrier-mev: of version 5's carriers)

Electrons are drawn E^-1 over 0.9-1.15 times the bin, protons over 1.2-6 times it (a proton deposits
about a third of its energy), the open top bin up to 10 TeV.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from dampeml.detector import bgo  # noqa: E402
from dampeml.detector.simulation import SIMULATION_VERSION, SimulationConfig, simulate  # noqa: E402
from dampeml.evaluation.dampe_mc import (  # noqa: E402
    ENERGY_BINS,
    ENERGY_CAP_GEV,
    LEAVES,
    AnalysisSample,
    best_single_cut,
    dampe_resolution,
    leaf_shares,
    root_gain,
)
from dampeml.physics.energy import held_out_estimate, resolution  # noqa: E402
from dampeml.physics.samples import sample_from_events  # noqa: E402
from dampeml.physics.selection import FIDUCIAL, containment  # noqa: E402

RANGE = {"electron": (0.9, 1.15), "proton": (1.2, 6.0)}
RESOLUTION_BINS = (
    (5, 10),
    (10, 20),
    (20, 50),
    (50, 100),
    (100, 300),
    (300, 1000),
    (1000, 3000),
    (3000, 10000),
)


def _resolutions(args: tuple[int, int, int, dict]) -> list[tuple[float, int]]:
    """The standard energy estimate's resolution for fiducial electrons per RESOLUTION_BINS of true
    energy (the correction fitted on the even events, measured on the odd ones), and the counts."""
    n, seed, version, study = args
    for name, value in study.items():
        setattr(bgo, name, value)
    events, _ = simulate(SimulationConfig("electron", n, 5.0, 10_000.0, seed=seed, version=version))
    s = sample_from_events(events)
    fid = containment(s.axis) == FIDUCIAL
    true = s.true_energy_gev[fid]
    estimate, held_out = held_out_estimate(s.deposit_mev[fid], true)
    out = []
    for lo, hi in RESOLUTION_BINS:
        m = held_out & (true >= lo) & (true < hi)
        out.append((resolution(estimate[m], true[m])[1], int(m.sum())))
    return out


def _sample(args: tuple[str, str, int, int, int, dict]) -> AnalysisSample:
    """One bin's simulated events of one particle and version, as the analysis sees them. `study` sets
    constants of `detector.bgo`."""
    bin_name, particle, n, seed, version, study = args
    for name, value in study.items():
        setattr(bgo, name, value)
    lo, hi = ENERGY_BINS[bin_name]
    lo_f, hi_f = RANGE[particle]
    cfg = SimulationConfig(particle, n, lo * lo_f, min(hi, ENERGY_CAP_GEV) * hi_f, seed=seed, version=version)
    return AnalysisSample.from_events(simulate(cfg)[0])


def _auc(electrons: np.ndarray, protons: np.ndarray) -> float:
    """P(an electron scores above a proton), from ranks."""
    ranks = np.concatenate([electrons, protons]).argsort().argsort() + 1.0
    n_e, n_p = len(electrons), len(protons)
    return float((ranks[:n_e].sum() - n_e * (n_e + 1) / 2) / (n_e * n_p))


def _fisher_auc(electrons: dict[str, np.ndarray], protons: dict[str, np.ndarray]) -> float:
    """Test AUC of a linear (Fisher) discriminant on the logs of every variable, trained on the first
    half of each sample and tested on the second: how separable the classes are without a network."""
    names = sorted(electrons)
    x_e = np.log(np.column_stack([electrons[k] for k in names]) + 1e-9)
    x_p = np.log(np.column_stack([protons[k] for k in names]) + 1e-9)
    h_e, h_p = len(x_e) // 2, len(x_p) // 2
    cov = np.cov(x_e[:h_e].T) + np.cov(x_p[:h_p].T) + 1e-6 * np.eye(len(names))
    w = np.linalg.solve(cov, x_e[:h_e].mean(axis=0) - x_p[:h_p].mean(axis=0))
    return _auc(x_e[h_e:] @ w, x_p[h_p:] @ w)


def _share(share: float, n: int) -> str:
    return f"{share:.4f} ± {np.sqrt(share * (1 - share) / max(n, 1)):.4f}"


def _tvd(a: np.ndarray, b: np.ndarray) -> float:
    return 0.5 * float(np.abs(a - b).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", type=int, nargs="+", default=[SIMULATION_VERSION])
    ap.add_argument("--electrons", type=int, default=3000, help="electrons simulated per bin")
    ap.add_argument("--protons", type=int, default=4000, help="protons simulated per bin")
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument(
        "--resolution-electrons", type=int, default=20000, help="electrons for the energy resolution"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--halo-concentration", type=float, help="study: bgo.HADRON_HALO_CONCENTRATION (version 4)"
    )
    ap.add_argument(
        "--core-reach", type=float, help="study: bgo.HADRON_CORE_REACH, interaction lengths (version 4)"
    )
    ap.add_argument("--em-concentration", type=float, help="study: bgo.HADRON_EM_CONCENTRATION")
    ap.add_argument("--cascade-concentration", type=float, help="study: bgo.HADRON_CASCADE_CONCENTRATION")
    ap.add_argument(
        "--generation-gap", type=float, help="study: bgo.HADRON_GENERATION_GAP, interaction lengths"
    )
    ap.add_argument("--bock-profile", action="store_true", help="study: bgo.HADRON_BOCK_PROFILE")
    ap.add_argument("--carrier-mev", type=float, help="study: bgo.HADRON_CORE_CARRIER_MEV (version 5)")
    ap.add_argument("--depth-spread", type=float, help="study: bgo.HADRON_DEPTH_SPREAD")
    args = ap.parse_args()
    asked = {"HADRON_HALO_CONCENTRATION": args.halo_concentration, "HADRON_CORE_REACH": args.core_reach,
             "HADRON_EM_CONCENTRATION": args.em_concentration,
             "HADRON_CASCADE_CONCENTRATION": args.cascade_concentration,
             "HADRON_GENERATION_GAP": args.generation_gap,
             "HADRON_BOCK_PROFILE": args.bock_profile or None, "HADRON_CORE_CARRIER_MEV": args.carrier_mev,
             "HADRON_DEPTH_SPREAD": args.depth_spread}  # fmt: skip
    study = {name: value for name, value in asked.items() if value is not None}
    t0 = time.time()
    size = {"electron": args.electrons, "proton": args.protons}
    tasks = [(b, p, size[p], args.seed + 10 * i + (p == "proton"), v, study)
             for i, b in enumerate(ENERGY_BINS) for p in size for v in args.versions]  # fmt: skip
    with ProcessPoolExecutor(args.workers) as pool:
        samples = dict(zip([(b, p, v) for b, p, _, _, v, _ in tasks], pool.map(_sample, tasks), strict=True))
    elapsed = time.time() - t0
    print(f"simulated {len(tasks)} samples in {elapsed:.0f} s (versions {args.versions}; study {study})\n")
    for b in ENERGY_BINS:
        leaves = LEAVES[b]
        shares, counts, best, fisher = {}, {}, {}, {}
        for v in args.versions:
            corr = samples[(b, "electron", v)].correction()
            picked = {}
            for p in ("electron", "proton"):
                picked[p] = samples[(b, p, v)].in_bin(b, corr)
                shares[p, v], counts[p, v] = leaf_shares(picked[p], leaves), len(picked[p]["sumRms"])
            best[v] = best_single_cut(picked["electron"], picked["proton"])
            fisher[v] = _fisher_auc(picked["electron"], picked["proton"])
        sizes = [
            f"version {v} {counts['electron', v]} electrons, {counts['proton', v]} protons"
            for v in args.versions
        ]
        print(f"## {b} GeV: " + ", ".join(sizes))
        head = " | ".join(f"v{v}" for v in args.versions)
        print(f"| leaf | e DAMPE | e {head} | p DAMPE | p {head} |")
        for i, leaf in enumerate(leaves):
            cols = []
            for p, ref in (("electron", leaf.electrons), ("proton", leaf.protons)):
                ours = [_share(shares[p, v][i], counts[p, v]) for v in args.versions]
                cols.append(f"{ref:.4f} | " + " | ".join(ours))
            print(f"| {leaf.label()} | " + " | ".join(cols) + " |")
        ref_e = np.array([leaf.electrons for leaf in leaves])
        ref_p = np.array([leaf.protons for leaf in leaves])
        distances = [f"v{v} electrons {_tvd(shares['electron', v], ref_e):.3f} "
                     f"protons {_tvd(shares['proton', v], ref_p):.3f}" for v in args.versions]  # fmt: skip
        print("total variation distance to DAMPE: " + ", ".join(distances))
        label, gain = root_gain(leaves)
        cuts = [f"v{v} {name} < {cut:.4g} gain {g:.3f}" for v, (name, cut, g) in best.items()]
        print(f"best single cut: DAMPE's {label} gain {gain:.3f} (of 0.25); ours " + ", ".join(cuts))
        print(
            "linear discriminant on every variable, test AUC: "
            + ", ".join(f"v{v} {a:.5f}" for v, a in fisher.items())
            + "\n"
        )
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [(args.resolution_electrons, args.seed + 100, v, study) for v in args.versions]
        res = dict(zip(args.versions, pool.map(_resolutions, jobs), strict=True))
    print(
        "## Electron energy resolution (standard estimate, fiducial; half the 16-84% width) against DAMPE's"
    )
    print("| true E (GeV) | DAMPE | " + " | ".join(f"v{v}" for v in args.versions) + " |")
    for i, (lo, hi) in enumerate(RESOLUTION_BINS):
        ours = " | ".join(f"{res[v][i][0]:.2%} ({res[v][i][1]})" for v in args.versions)
        print(f"| {lo}-{hi} | {dampe_resolution(float(np.sqrt(lo * hi))):.2%} | {ours} |")
    print(f"\nwall time {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
