"""The high-energy trigger's efficiency per particle and energy, for simulation versions side by side.

Run: `.venv/bin/python benchmarks/bench_trigger.py [--events 2000] [--seed 5] [--versions 3 4]`.

Every accepted primary is simulated (`trigger=False`, E^-1 within +-10% of each energy, the same
primaries in every version) and the share the trigger (`detector.trigger.high_energy_trigger`) fires
on is printed with its binomial error. For electrons also the change of that share when every
threshold rises by 0.9%: DAMPE measured its thresholds rising by ~0.9% a year and the electrons'
efficiency changing by less than 0.05% above 30 GeV and by about -5% at 2 GeV (Li et al. 2024), a
published observable that nothing in the simulation is fitted to.

Then the electrons' first BGO layer, whose low side decides which the trigger records, against two
particle-by-particle cascades that bracket it (`evaluation.em_cascade`: photons converting late or at
once, nothing fitted): its energy's 1 / 5 / 16 / 50% quantiles and the share below 10 MIPs.
"""

from __future__ import annotations

import argparse

import numpy as np

from dampeml import geometry as geo
from dampeml.detector.simulation import (
    PREVIOUS_SIMULATION_VERSION,
    SIMULATION_VERSION,
    SimulationConfig,
    simulate,
)
from dampeml.detector.trigger import HET_THRESHOLDS_MIP, high_energy_trigger
from dampeml.evaluation.em_cascade import first_layer_deposits

ENERGIES_GEV = {
    "proton": (10.0, 100.0, 1e3, 1e4, 1e5),
    "helium": (10.0, 100.0, 1e3, 1e4, 1e5),
    "electron": (2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 1e3, 1e4),
}
ONSET_ENERGIES_GEV = (5.0, 10.0, 20.0, 50.0, 100.0)
ONSET_QUANTILES = (1, 5, 16, 50)
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
    first_layer_onset(args)


def _onset_cell(mips: np.ndarray) -> str:
    q = " / ".join(f"{x:.1f}" for x in np.percentile(mips, ONSET_QUANTILES))
    return f"{q} ({np.mean(mips < HET_THRESHOLDS_MIP[0]):.2%})"


def first_layer_onset(args: argparse.Namespace) -> None:
    """The first layer's energy (MIPs) of electrons at fixed energies: both cascades and each version."""
    print(
        f"\nElectrons' first-layer energy (MIPs), {ONSET_QUANTILES}% quantiles (share below "
        f"{HET_THRESHOLDS_MIP[0]:g} MIPs), {args.events} electrons per point "
        "(the cascades given the simulated electrons' directions)"
    )
    print(
        "| E (GeV) | cascade, late pairs | "
        + " | ".join(f"v{v}" for v in args.versions)
        + " | cascade, early pairs |"
    )
    print("|---|---|" + "---|" * len(args.versions) + "---|")
    rng = np.random.default_rng(args.seed)
    for e in ONSET_ENERGIES_GEV:
        cells = []
        for v in args.versions:
            cfg = SimulationConfig(
                "electron", args.events, 0.9999 * e, 1.0001 * e, seed=args.seed, version=v, trigger=False
            )
            events = simulate(cfg)[0]
            cells.append(_onset_cell(np.asarray(events["bgo_energy"])[:, 0, :].sum(axis=1) / geo.BGO_MIP_MEV))
        cos_theta = np.cos(np.asarray(events["true_theta"]))  # the same directions in every version
        late, early = (first_layer_deposits(rng, e * 1000.0, cos_theta, slow) for slow in (True, False))
        cells = [_onset_cell(late / geo.BGO_MIP_MEV), *cells, _onset_cell(early / geo.BGO_MIP_MEV)]
        print(f"| {e:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
