"""Simulation production as a Ray job: independent seeded shards, one ROOT file each.

    ray job submit --working-dir . -- python jobs/simulate.py \\
        --particle proton --events 1000000 --energy-min 10 --energy-max 1e6 --out /shared/mc/p

Locally (a Ray instance is started): `python jobs/simulate.py ... --out data/mc/p`.
Rerunning the same command makes only the shards that are missing or broken.
All logic lives in `dampeml.detector.production`.
"""

from __future__ import annotations

import argparse
import sys

from dampeml.cli.checks import check_simulation_options
from dampeml.detector.production import ProductionError, ProductionRequest, run_production
from dampeml.detector.simulation import MAX_EVENTS_PER_FILE
from dampeml.io.root_reader import EventFileError
from dampeml.security import StorageNotAllowedError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--particle", required=True, choices=["proton", "helium", "electron"])
    p.add_argument("--events", type=int, required=True, help="accepted events in total")
    p.add_argument("--energy-min", type=float, required=True, help="minimum kinetic energy, GeV")
    p.add_argument("--energy-max", type=float, required=True, help="maximum kinetic energy, GeV")
    p.add_argument("--out", required=True, help="output directory (visible from every worker)")
    p.add_argument("--spectrum-index", type=float, default=1.0, help="dN/dE ~ E^-index")
    p.add_argument("--mode", default="mc", choices=["mc", "flight"])
    p.add_argument("--seed", type=int, default=0, help="base seed; shard seeds derive from it")
    p.add_argument("--events-per-shard", type=int, default=2000)
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--num-cpus", type=int, default=None, help="logical CPUs of a local Ray")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:  # the options by name first, as `dampeml simulate-production` does
        check_simulation_options(
            args.events, args.energy_min, args.energy_max, args.spectrum_index, args.seed
        )
        if not 1 <= args.events_per_shard <= MAX_EVENTS_PER_FILE:
            raise ValueError(
                f"--events-per-shard {args.events_per_shard}: must be in 1..{MAX_EVENTS_PER_FILE}"
            )
        request = ProductionRequest(
            particle=args.particle,
            n_events=args.events,
            energy_min=args.energy_min,
            energy_max=args.energy_max,
            out_dir=args.out,
            spectrum_index=args.spectrum_index,
            mode=args.mode,
            base_seed=args.seed,
            events_per_shard=args.events_per_shard,
        )
        run_production(
            request, progress=not args.no_progress, ray_address=args.address, num_cpus=args.num_cpus
        )
    except (ValueError, EventFileError, ProductionError, StorageNotAllowedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
