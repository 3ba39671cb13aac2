"""Run a training recipe as a Ray job (the same as `dampeml pipeline run`).

    ray job submit --working-dir . -- python jobs/pipeline.py recipes/chain.yaml \\
        --profile reference --workdir s3://bucket/pipelines

Only this driver talks to MLflow (MLFLOW_TRACKING_URI: the cluster's tracking server).
"""

from __future__ import annotations

import sys

from dampeml.cli.main import app

if __name__ == "__main__":
    sys.exit(app(["pipeline", "run", *sys.argv[1:]], standalone_mode=True))
