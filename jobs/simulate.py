"""Simulation production as a Ray job (the same as `dampeml simulate-production`): independent
seeded shards, one ROOT file each.

    ray job submit --working-dir . -- python jobs/simulate.py \\
        --particle proton --events 1000000 --energy-min 10 --energy-max 1e6 --out /data/mc/p

Locally (a Ray instance is started): `python jobs/simulate.py ... --out data/mc/p`.
Rerunning the same command makes only the shards that are missing or broken.
"""

from __future__ import annotations

import sys

from dampeml.cli.main import app

if __name__ == "__main__":
    sys.exit(app(["simulate-production", *sys.argv[1:]], standalone_mode=True))
