"""How hard electrons and protons are to tell apart on the simulation, per bin of deposited energy.

DAMPE's classical electron/proton variable zeta (features.shower_variables) cut at a fixed electron
efficiency, and what share of protons passes that cut (the proton survival; its inverse is the
rejection). Electrons and protons are simulated with the platform's `simulate`, reduced with the same
functions as `dampeml flux` (`physics.samples.sample_from_events`: the standard shower axis, the
deposit, zeta) and kept when the axis is fiducial (`physics.selection.containment`), as the
electron-flux analysis of seed 001 does. Beside it, the electrons' energy resolution with the
standard estimate (`physics.energy`: the deposit with a correction fitted on the other half of the
electrons): an observable of the same showers that no simulation parameter is fitted to. And at
DAMPE's own cut (zeta < 8.5, its electron peak a few units below it): the electron efficiency and
the proton survival there, and the electrons' median zeta. zeta is an absolute quantity (RMS widths
in mm, DAMPE's 8e6 scale), so these compare the simulated showers' widths and tails with DAMPE's.

    .venv/bin/python benchmarks/bench_shower_separation.py [--events 600000] [--efficiency 0.9 0.995]
        [--early-start 3] [--simulation-version 3]

Protons are drawn E^-1 from 100 GeV to 30 TeV and electrons from 30 GeV to 5 TeV (so every
deposit bin holds both); a survival of 0 is printed as the 90% upper limit 2.3 / N.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "platform"))

from dampeml.detector.simulation import SIMULATION_VERSION, SimulationConfig, simulate  # noqa: E402
from dampeml.features.shower_variables import shower_variables  # noqa: E402
from dampeml.physics.energy import held_out_estimate, resolution  # noqa: E402
from dampeml.physics.samples import sample_from_events, score_from  # noqa: E402
from dampeml.physics.selection import FIDUCIAL, containment  # noqa: E402

GENERATION = {"electron": (30.0, 5e3, 1.0), "proton": (100.0, 3e4, 1.0)}
SHARD = 20_000
#: DAMPE's electron selection cut on zeta (its 2017 electron spectrum; its electron peak lies below it)
DAMPE_ZETA_CUT = 8.5


def _shard(args: tuple[str, int, int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(deposit GeV, score = -log10 zeta, true GeV) of the fiducial events of one simulated shard
    (with `early` > 0: whose shower starts in the first `early` layers)."""
    particle, n, seed, early, version = args
    lo, hi, index = GENERATION[particle]
    cfg = SimulationConfig(particle, n, lo, hi, spectrum_index=index, seed=seed, version=version)
    events, _ = simulate(cfg)
    s = sample_from_events(events)
    keep = containment(s.axis) == FIDUCIAL
    if early:
        variables, names = shower_variables(np.asarray(events["bgo_energy"]))
        keep &= variables[:, names.index("first_layer")] < early
    return s.deposit_mev[keep] / 1e3, s.score[keep], s.true_energy_gev[keep]


def simulate_particle(
    particle: str, n: int, seed: int, workers: int, early: int, version: int
) -> dict[str, np.ndarray]:
    jobs = [(particle, min(SHARD, n - i), seed + i // SHARD, early, version) for i in range(0, n, SHARD)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_shard, jobs))
    return {k: np.concatenate([p[i] for p in parts]) for i, k in enumerate(("deposit", "score", "true"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=60_000, help="events simulated per particle")
    ap.add_argument("--efficiency", type=float, nargs="+", default=[0.9, 0.995])
    ap.add_argument("--bins", type=float, nargs="+", default=[30, 100, 300, 1000, 3000], help="deposits, GeV")
    ap.add_argument(
        "--early-start",
        type=int,
        default=0,
        metavar="LAYERS",
        help="keep showers that start (> 5 MIP) in the first LAYERS layers: a stand-in for DAMPE's "
        "high-energy trigger, which fires on the first four layers' deposits (0: every event)",
    )
    ap.add_argument("--seed", type=int, default=7100)
    ap.add_argument(
        "--simulation-version",
        type=int,
        default=SIMULATION_VERSION,
        help="physics version (from 3: only what DAMPE's high-energy trigger records; 2: every primary)",
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    t0 = time.perf_counter()
    run = (args.workers, args.early_start, args.simulation_version)
    e = simulate_particle("electron", args.events, args.seed, *run)
    p = simulate_particle("proton", args.events, args.seed + 5000, *run)
    print(
        f"simulation version {args.simulation_version}: {args.events:,} electrons and protons each "
        f"({len(e['score']):,} and {len(p['score']):,} fiducial) in {time.perf_counter() - t0:.0f} s"
    )
    estimate, held_out = held_out_estimate(e["deposit"] * 1e3, e["true"])

    head = " | ".join(f"p survival at {q:.1%} e" for q in args.efficiency)
    dampe_cut = score_from("zeta", np.asarray(DAMPE_ZETA_CUT))
    fixed = f"zeta < {DAMPE_ZETA_CUT:g}: e efficiency, p survival"
    tail = "e zeta median | e energy bias / resolution"
    print(f"\n| deposit (GeV) | electrons | protons | {head} | {fixed} | {tail} |")
    print("|---|---|---|" + "---|" * len(args.efficiency) + "---|---|---|")
    for lo, hi in zip(args.bins[:-1], args.bins[1:], strict=True):
        ie = (e["deposit"] >= lo) & (e["deposit"] < hi)
        ip = (p["deposit"] >= lo) & (p["deposit"] < hi)
        cells = []
        for q in args.efficiency:
            cut = np.quantile(e["score"][ie], 1.0 - q)  # electrons above the cut: the efficiency
            k, n = int((p["score"][ip] >= cut).sum()), int(ip.sum())
            cells.append(f"{k / n:.1e} ({k}/{n:,})" if k else f"< {2.3 / n:.1e} (0/{n:,})")
        at_cut = f"{(e['score'][ie] >= dampe_cut).mean():.1%}, {(p['score'][ip] >= dampe_cut).mean():.1e}"
        cells += [at_cut, f"{10 ** -np.median(e['score'][ie]):.2f}"]  # score = -log10 zeta
        test = ie & held_out
        bias, res = resolution(estimate[test], e["true"][test])
        row = [f"{lo:g}-{hi:g}", f"{ie.sum():,}", f"{ip.sum():,}", *cells, f"{bias:+.1%} / {res:.1%}"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
