"""Reprocess event files with the registered chain, as a Ray job (the same as `dampeml reprocess`).

    ray job submit --working-dir . -- python jobs/reprocess.py \\
        --input 's3://bucket/flight/run-*.root' --out s3://bucket/reco/v1 --alias production \\
        --actors 64 [--gpus-per-actor 0.25] [--runtime onnx]

Inside a submitted job RAY_ADDRESS is set, so the job joins the cluster; locally a Ray instance is
started. MLFLOW_TRACKING_URI must name a tracking server every node can reach. After an
interruption, submit the same command again: committed files are kept, the rest is redone.
"""

from __future__ import annotations

import sys

from dampeml.cli.main import app

if __name__ == "__main__":
    sys.exit(app(["reprocess", *sys.argv[1:]], standalone_mode=True))
