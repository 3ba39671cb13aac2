"""The high-energy trigger's efficiency per particle and energy, for simulation versions side by side.

Run: `.venv/bin/python benchmarks/bench_trigger.py [--events 2000] [--seed 5] [--versions 3 4]`.

Every accepted primary is simulated (`trigger=False`, E^-1 within +-10% of each energy, the same
primaries in every version) and the share the trigger (`detector.trigger.high_energy_trigger`) fires
on is printed with its binomial error. For electrons also the change of that share when every
threshold rises by 0.9%: DAMPE measured its thresholds rising by ~0.9% a year and the electrons'
efficiency changing by less than 0.05% above 30 GeV (Li et al. 2024), a published observable that
nothing in the simulation is fitted to.
"""

from __future__ import annotations

import argparse

import numpy as np

from dampeml.detector.simulation import (
    PREVIOUS_SIMULATION_VERSION,
    SIMULATION_VERSION,
    SimulationConfig,
    simulate,
)
from dampeml.detector.trigger import high_energy_trigger

ENERGIES_GEV = {
    "proton": (10.0, 100.0, 1e3, 1e4, 1e5),
    "helium": (10.0, 100.0, 1e3, 1e4, 1e5),
    "electron": (10.0, 20.0, 50.0, 100.0, 1e3, 1e4),
}
#: DAMPE's yearly rise of its trigger thresholds (Li et al. 2024)
THRESHOLD_RISE = 1.009


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2000, help="accepted primaries per particle and energy")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument(
        "--versions", type=int, nargs="+", default=[PREVIOUS_SIMULATION_VERSION, SIMULATION_VERSION]
    )
    args = ap.parse_args()
    print(f"Trigger efficiency, {args.events} accepted primaries per point (seed {args.seed}), +- its error")
    print("| particle | E (GeV) | " + " | ".join(f"v{v}" for v in args.versions) + " |")
    print("|---|---|" + "---|" * len(args.versions))
    for particle, energies in ENERGIES_GEV.items():
        for e in energies:
            cells = []
            for v in args.versions:
                cfg = SimulationConfig(
                    particle, args.events, 0.9 * e, 1.1 * e, seed=args.seed, version=v, trigger=False
                )
                bgo = np.asarray(simulate(cfg)[0]["bgo_energy"])
                k = high_energy_trigger(bgo)
                err = np.sqrt(k.mean() * (1 - k.mean()) / len(k))
                cell = f"{k.mean():.3f} ± {err:.3f}"
                if particle == "electron":
                    risen = high_energy_trigger(bgo, THRESHOLD_RISE).mean()
                    cell += f" (thresholds +0.9%: {risen - k.mean():+.4f})"
                cells.append(cell)
            print(f"| {particle} | {e:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
