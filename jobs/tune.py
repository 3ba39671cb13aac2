"""Run an ablation campaign with Ray Tune as a Ray job (the same as `dampeml tune`).

    ray job submit --working-dir . -- python jobs/tune.py campaigns/bgo-filter-shape.yaml \\
        --workdir /data/campaigns

The work directory must be visible from every node (datasets cache, Tune and Train storage).
Only this driver talks to MLflow (MLFLOW_TRACKING_URI: the cluster's tracking server).
"""

from __future__ import annotations

import sys

from dampeml.cli.main import app

if __name__ == "__main__":
    sys.exit(app(["tune", *sys.argv[1:]], standalone_mode=True))
