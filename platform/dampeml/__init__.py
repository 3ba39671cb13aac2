"""dampeml: deep-learning reconstruction for DAMPE, from simulation to reprocessed flight data.

The data flow, one subpackage per stage:
detector (fast simulation) -> io (ROOT event files, Ray Data source) -> ...
"""

import os

# tf-keras, not Keras 3: Keras 3 fails under MultiWorkerMirroredStrategy inside Ray Train
# (keras-team/keras#20585, ray-project/ray#47464). This must be set before TensorFlow is
# imported anywhere, so the package sets it on import; Ray workers get it from
# `dampeml.runtime.RUNTIME_ENV` as well.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

__version__ = "0.1.0"
