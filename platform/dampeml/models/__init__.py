"""The networks: one tf-keras builder per architecture family, and the catalog of the six networks.

- :mod:`.config`: strict frozen-dataclass configs (from a dict or YAML; unknown keys rejected);
- :mod:`.bgo_cnn`: BGO direction CNN and the data/MC alignment head (paper section 4);
- :mod:`.hough_cnn`: Hough CNN, regression (coarse/precise) or classifier head (sections 5-6);
- :mod:`.raw_stk_cnn`: raw STK inelastic classifier (section 6, Figure 12);
- :mod:`.hamf`: HAMF electron/proton classifier (seed 001);
- :mod:`.catalog`: fixed network names -> family, dataset kind, inputs, task, presets; `build`.

Importing this package does not import TensorFlow; building a model does. Every model uses
built-in tf-keras layers only (no Python Lambda, no custom class), so a saved model loads with
`tf_keras.models.load_model(path, safe_mode=True)` in any process, without importing this package.
"""

from dampeml.models.bgo_cnn import BgoCnnConfig, build_bgo_cnn, with_alignment_head
from dampeml.models.catalog import (
    CHAIN_NETWORKS,
    NETWORK_NAMES,
    NETWORKS,
    NetworkSpec,
    UnknownNetworkError,
    aligned_name,
    build,
    build_from_config,
    get_network,
)
from dampeml.models.common import compile_model
from dampeml.models.config import ConfigError, ModelConfig
from dampeml.models.hamf import HamfConfig, build_hamf
from dampeml.models.hough_cnn import HoughCnnConfig, build_hough_cnn
from dampeml.models.raw_stk_cnn import RawStkCnnConfig, build_raw_stk_cnn

__all__ = [
    "CHAIN_NETWORKS",
    "NETWORKS",
    "NETWORK_NAMES",
    "BgoCnnConfig",
    "ConfigError",
    "HamfConfig",
    "HoughCnnConfig",
    "ModelConfig",
    "NetworkSpec",
    "RawStkCnnConfig",
    "UnknownNetworkError",
    "aligned_name",
    "build",
    "build_bgo_cnn",
    "build_from_config",
    "build_hamf",
    "build_hough_cnn",
    "build_raw_stk_cnn",
    "compile_model",
    "get_network",
    "with_alignment_head",
]
