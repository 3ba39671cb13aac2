"""Train a network with Ray Train as a Ray job (the same as `dampeml train`).

    ray job submit --working-dir . -- python jobs/train.py bgo-direction-low \\
        --dataset s3://bucket/datasets/bgo-direction-low --workers 8 --gpus-per-worker 1 \\
        --storage s3://bucket/runs --preset full --epochs 100

Only this driver talks to MLflow (MLFLOW_TRACKING_URI: the cluster's tracking server).
"""

from __future__ import annotations

import sys

from dampeml.cli.main import app

if __name__ == "__main__":
    sys.exit(app(["train", *sys.argv[1:]], standalone_mode=True))
