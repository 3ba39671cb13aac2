"""The physics report of the registered chain on held-out MC, as a Ray job (the same as `dampeml evaluate`).

    ray job submit --working-dir . -- python jobs/evaluate.py \\
        --input '/data/mc/heldout/*.root' --out /data/reports/2026-11 --alias production

Only this driver talks to MLflow (MLFLOW_TRACKING_URI: the cluster's tracking server).
"""

from __future__ import annotations

import sys

from dampeml.cli.main import app

if __name__ == "__main__":
    sys.exit(app(["evaluate", *sys.argv[1:]], standalone_mode=True))
