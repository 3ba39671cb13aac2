"""Build a training dataset from a spec, as a Ray job (the same as `dampeml dataset build`).

    ray job submit --working-dir . -- python jobs/build_dataset.py \\
        datasets/bgo-direction-low.yaml --out s3://bucket/datasets/bgo-direction-low [--resume]

Inside a submitted job RAY_ADDRESS is set, so the build joins the cluster; locally a Ray
instance is started. Rerun with --resume after an interruption: finished units are kept.
"""

from __future__ import annotations

import sys

from dampeml.cli.main import app

if __name__ == "__main__":
    sys.exit(app(["dataset", "build", *sys.argv[1:]], standalone_mode=True))
