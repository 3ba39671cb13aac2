"""What every family shares: the lazy tf-keras import, dense stacks, and `compile_model`.

Losses and metrics follow the paper: mean squared error for the regressions (BGO direction,
Hough offsets), binary cross-entropy for the classifiers (inelastic, electron/proton), Adam
with an initial learning rate of 1e-4. Regression metric: mean absolute error (the paper's
Figure 5 shows MSE and MAE); classifier metrics: ROC AUC and accuracy at 0.5.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from dampeml.models.config import PAPER_LEARNING_RATE, ConfigError, ModelConfig, Task

#: The feature extractor of every family: the numbered convolutions (`conv_<i>`, HAMF's `cnn_<i>`),
#: HAMF's variable branch (`dnn_<i>`) and the attention modules among them; the rest is the head.
BACKBONE = re.compile(r"^(conv|cnn|dnn)_(\d+|attention_\d+_.*)$")


def tf_keras():
    """The tf-keras module (Keras 2 API), imported on first use.

    TF_USE_LEGACY_KERAS is already set: `dampeml/__init__`, our parent package, sets it on import.
    """
    import tf_keras

    return tf_keras


def keras_name(network_name: str) -> str:
    """A catalog name as a Keras model name ('bgo-direction-low' -> 'bgo_direction_low')."""
    return network_name.replace("-", "_")


def dense_stack(x: Any, units: Sequence[int], activation: str, dropout: float, prefix: str) -> Any:
    """Dense layers (each followed by dropout when `dropout` > 0), named prefix_1, prefix_2, ..."""
    keras = tf_keras()
    for i, n in enumerate(units, start=1):
        x = keras.layers.Dense(n, activation=activation, name=f"{prefix}_{i}")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"{prefix}_dropout_{i}")(x)
    return x


def compile_model(model: Any, config: ModelConfig | Task, learning_rate: float | None = None) -> Any:
    """Set optimiser, loss and metrics for the config's task (or a task name); returns the model.

    `learning_rate` overrides the config's (e.g. the training code's scaled rate); with a task
    name and no rate, the paper's 1e-4 is used.
    """

    keras = tf_keras()
    task = config if isinstance(config, str) else config.task
    if learning_rate is None:
        learning_rate = PAPER_LEARNING_RATE if isinstance(config, str) else config.learning_rate
    if task == "regression":
        loss = keras.losses.MeanSquaredError()
        metrics = [keras.metrics.MeanAbsoluteError(name="mae")]
    elif task == "classification":
        loss = keras.losses.BinaryCrossentropy()
        metrics = [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]
    else:
        raise ValueError(f"unknown task {task!r}: use 'regression' or 'classification'")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss, metrics=metrics)
    return model


def freeze_backbone(model: Any) -> list[str]:
    """Freeze the feature extractor (BACKBONE) of `model` in place, leaving the head trainable (the
    transfer-learning variant "backbone frozen"); the frozen layers' names. Compile afterwards."""
    frozen = [layer.name for layer in model.layers if layer.weights and BACKBONE.match(layer.name)]
    head = [layer.name for layer in model.layers if layer.trainable_weights and layer.name not in frozen]
    if not frozen or not head:
        raise ConfigError(f"{model.name}: no backbone/head split (layers {[x.name for x in model.layers]})")
    for layer in model.layers:
        if layer.name in frozen:
            layer.trainable = False
    return frozen
