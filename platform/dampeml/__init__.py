"""dampeml: deep-learning reconstruction for DAMPE, from simulation to reprocessed flight data.

The data flow, one subpackage per stage:
detector (fast simulation) -> io (ROOT event files, Ray Data source) -> ...
"""

import os

#: What TensorFlow must find in the environment before it is imported anywhere: the package sets
#: it on import (a value already set wins), and Ray workers get it from `dampeml.runtime.RUNTIME_ENV`.
TF_ENV = {
    # tf-keras, not Keras 3: Keras 3 fails under MultiWorkerMirroredStrategy inside Ray Train
    # (keras-team/keras#20585, ray-project/ray#47464).
    "TF_USE_LEGACY_KERAS": "1",
    # GPU memory taken as needed: reprocessing actors with a fractional --gpus-per-actor share one
    # card, and by default the first TensorFlow process maps nearly all of it, so the others fail.
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",
}
for _name, _value in TF_ENV.items():
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
