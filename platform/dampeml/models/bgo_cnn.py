"""BGO direction CNN (paper section 4, Figure 4) and its data/MC alignment head.

Input "x": the 14x22x1 BGO image (bar / hottest bar, float32 in [0, 1]; rows alternate the
xz and yz projections). Output: x, y at the first and last STK plane (4 values, mm), linear.

From the paper:
- the mixed 14x22 image (better than separate xz/yz networks);
- 4x4 filters: the vertical size spans two consecutive layers of each projection (rows i and
  i + 2 of the mixed image); 3x5 filters were "significantly" worse (`kernel_size` ablates it);
- the convolution part ends in 100 variables (`dense_units[0] = 100`);
- ReLU everywhere except the linear output; MSE; Adam at 1e-4; no dropout (dropout and a
  smaller network were "significantly worse");
- the alignment: one more Dense(4) linear layer trained on flight data with the rest frozen
  (:func:`with_alignment_head`).
Our choices (Figure 4's exact stack is not in the text): two blocks of two 'same'-padded
convolutions (64, 64 | 128, 128 filters) with one 2x2 max pooling between them (14x22 -> 7x11),
then Dense 100 -> 50 -> 4. The two extra scalar inputs the figure adds to the 100 variables are
not used (the brief of this platform: the image alone).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from dampeml.models.common import compile_model, dense_stack, tf_keras
from dampeml.models.config import (
    ConfigError,
    ModelConfig,
    Task,
    check_fraction,
    check_indices,
    check_positive,
)

BGO_IMAGE_SHAPE = (14, 22)
TRACK_OUTPUTS = 4  # x_top, y_top, x_bot, y_bot
ALIGNMENT_LAYER = "alignment"


@dataclass(frozen=True)
class BgoCnnConfig(ModelConfig):
    family: ClassVar[str] = "bgo_cnn"

    image_shape: tuple[int, int] = BGO_IMAGE_SHAPE
    conv_filters: tuple[int, ...] = (64, 64, 128, 128)
    kernel_size: tuple[int, int] = (4, 4)  # paper: 4x4 beats 3x5
    padding: Literal["same", "valid"] = "same"
    pool_after: tuple[int, ...] = (1,)  # 0-based conv indices followed by max pooling
    pool_size: tuple[int, int] = (2, 2)
    dense_units: tuple[int, ...] = (100, 50)  # paper: the convolutions end in 100 variables
    dropout: float = 0.0  # paper: dropout hurt
    activation: str = "relu"
    n_outputs: int = TRACK_OUTPUTS
    #: The last Dense layer works in units of this many mm (tracks span +-400 mm): O(1)
    #: pre-activations from the first step instead of a slow climb to hundreds of mm.
    output_scale_mm: float = 100.0

    def validate(self) -> None:
        check_positive(
            self,
            image_shape=self.image_shape,
            conv_filters=self.conv_filters,
            kernel_size=self.kernel_size,
            pool_size=self.pool_size,
            dense_units=self.dense_units,
            n_outputs=self.n_outputs,
            output_scale_mm=self.output_scale_mm,
        )
        if not self.conv_filters:
            raise ConfigError("BgoCnnConfig.conv_filters: at least one convolution is needed")
        check_indices(self, "pool_after", self.pool_after, len(self.conv_filters))
        check_fraction(self, dropout=self.dropout)

    @property
    def task(self) -> Task:
        return "regression"


def build_bgo_cnn(config: BgoCnnConfig, name: str = "bgo_cnn", input_name: str = "x") -> Any:
    """The (uncompiled) BGO direction CNN of `config`."""
    keras = tf_keras()
    inputs = keras.Input(shape=(*config.image_shape, 1), dtype="float32", name=input_name)
    h = conv_features(
        inputs,
        config.conv_filters,
        config.kernel_size,
        config.padding,
        config.pool_after,
        config.pool_size,
        config.activation,
        prefix="conv",
    )
    h = dense_stack(h, config.dense_units, config.activation, config.dropout, prefix="dense")
    h = keras.layers.Dense(config.n_outputs, activation="linear", name="track_scaled")(h)
    outputs = keras.layers.Rescaling(config.output_scale_mm, name="track")(h)
    return keras.Model(inputs, outputs, name=name)


def conv_features(
    x: Any,
    filters: tuple[int, ...],
    kernel_size: tuple[int, int],
    padding: str,
    pool_after: tuple[int, ...],
    pool_size: tuple[int, int],
    activation: str,
    prefix: str,
) -> Any:
    """The BGO image convolutions (shared with the HAMF image branch): convs, max pools, flatten."""
    keras = tf_keras()
    for i, n in enumerate(filters):
        x = keras.layers.Conv2D(
            n, kernel_size, padding=padding, activation=activation, name=f"{prefix}_{i + 1}"
        )(x)
        if i in pool_after:
            x = keras.layers.MaxPooling2D(pool_size, padding="same", name=f"{prefix}_pool_{i + 1}")(x)
    return keras.layers.Flatten(name=f"{prefix}_flatten")(x)


def with_alignment_head(
    model: Any, trainable_backbone: bool = False, learning_rate: float | None = None, compile: bool = True
) -> Any:
    """`model` followed by the paper's data/MC alignment layer: Dense(4), linear, identity-initialised.

    Kernel = I and bias = 0, so before training the new model gives exactly `model`'s outputs.
    The backbone (the whole of `model`, kept as one nested layer named like it) is frozen
    unless `trainable_backbone`; frozen, it also runs in inference mode. The result is compiled
    for regression (MSE, Adam at `learning_rate`, default 1e-4) unless `compile=False`.
    Training it on the flight-data clean selection is the training code's job. Note that
    `model` itself is frozen in place (its `trainable` flag is set), as Keras shares the layers.
    """
    keras = tf_keras()
    n_out = model.outputs[0].shape[-1]
    inputs = [
        keras.Input(shape=t.shape[1:], dtype=t.dtype, name=n)
        for t, n in zip(model.inputs, model.input_names, strict=True)
    ]
    model.trainable = trainable_backbone
    x = inputs[0] if len(inputs) == 1 else inputs
    features = model(x) if trainable_backbone else model(x, training=False)
    head = keras.layers.Dense(
        n_out,
        activation="linear",
        kernel_initializer="identity",
        bias_initializer="zeros",
        name=ALIGNMENT_LAYER,
    )
    aligned = keras.Model(
        inputs[0] if len(inputs) == 1 else inputs, head(features), name=f"{model.name}_aligned"
    )
    if compile:
        compile_model(aligned, "regression", learning_rate)
    return aligned
