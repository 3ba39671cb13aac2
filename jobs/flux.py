"""The electron flux by cut and count, as a Ray job (the same as `dampeml flux`).

    ray job submit --working-dir . -- python jobs/flux.py --flight /data/reco/flight-2026 \\
        --electron-mc /data/reco/mc-electrons --proton-mc /data/reco/mc-protons \\
        --score electron_score --out /data/flux/2026-11

The reprocessing outputs are read with Ray Data; the MC truth comes from their source event files.
"""

from __future__ import annotations

import sys

from dampeml.cli.main import app

if __name__ == "__main__":
    sys.exit(app(["flux", *sys.argv[1:]], standalone_mode=True))
