"""Train the flight-data alignment head of a BGO direction network, as a Ray job (`dampeml align`).

    ray job submit --working-dir . -- python jobs/align.py bgo-direction-mid \\
        --flight '/data/flight/2026/run_*.root' --alias production

Only this driver talks to MLflow (MLFLOW_TRACKING_URI: the cluster's tracking server).
"""

from __future__ import annotations

import sys

from dampeml.cli.main import app

if __name__ == "__main__":
    sys.exit(app(["align", *sys.argv[1:]], standalone_mode=True))
