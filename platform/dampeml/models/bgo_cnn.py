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

Our choice, not the paper's: the `line_fit` head (`head="line_fit"`, used by the small preset).
The convolutions output, per pixel (layer, bar), a weight w = exp(g) and a sub-bar shift d;
a parameter-free layer then fits, per projection, the weighted least-squares line
u = a + b z through the points (layer z, bar centre + d) and extrapolates it to the STK
planes. Why: a dense head must learn the per-event weighted line fit (a ratio of energy
sums) from examples, and with O(1e4) events it does not: a small dense-head CNN reached
3.4-4.4 deg (68% containment, 1-1000 TeV p/He, 30k events) against the shower-axis fit's
1.4 deg, whatever the pooling, coordinate channels, log input, loss or learning rate, and
even a dense network fed the exact per-layer centroids stayed at ~2 deg after 20 epochs.
The geometry (straight line, layer depths, bar centres) is fixed; everything learned (which
pixels count and how much, where inside a bar the shower sits) starts from random weights,
so the untrained network is far off (~30 deg); tests/test_bgo_direction_physics.py shows
what it learns.
`input_channels` adds log1p(255 x) / log(256) to the image: sub-bar position lives in the
ratios of neighbouring bars, which the log turns into differences a convolution can take.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from dampeml import geometry as geo
from dampeml.models.attention import AttentionKind, attend, check_attention
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
    #: The line-fit head works in these units too (positions and depths).
    output_scale_mm: float = 100.0
    #: Input channels (our choice): "image" (the paper's), "log" (log1p(255 x) / log 256).
    input_channels: tuple[Literal["image", "log"], ...] = ("image",)
    #: "dense" (the paper's) or "line_fit" (our choice; see the module docstring). The
    #: line fit reads every pixel: no pooling, and `dense_units`/`dropout` are not used.
    head: Literal["dense", "line_fit"] = "dense"
    #: Line fit: log-weights are clipped to +-this (exp overflow guard; e^8 ~ 3000:1).
    line_fit_log_weight_clip: float = 8.0
    #: Attention modules (seed 002; :mod:`.attention`): where (0: the input, i: after convolution i;
    #: empty: none), which (spatial, channel or dual) and the spatial kernel (k x k)
    attention_at: tuple[int, ...] = ()
    attention: AttentionKind = "dual"
    attention_kernel: int = 7

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
        check_positive(self, line_fit_log_weight_clip=self.line_fit_log_weight_clip)
        check_attention(self, self.attention_at, self.attention_kernel, len(self.conv_filters))
        if not self.input_channels or len(set(self.input_channels)) != len(self.input_channels):
            raise ConfigError(
                f"BgoCnnConfig.input_channels: give each of 'image', 'log' at most once, got "
                f"{list(self.input_channels)}"
            )
        if self.head == "line_fit":
            if self.pool_after:
                raise ConfigError(
                    "BgoCnnConfig.pool_after: the line_fit head needs the full 14x22 resolution "
                    f"(one weight per bar); use pool_after=[] (got {list(self.pool_after)})"
                )
            if self.padding != "same" or self.image_shape != BGO_IMAGE_SHAPE or self.n_outputs != 4:
                raise ConfigError(
                    "BgoCnnConfig: the line_fit head needs padding='same', image_shape=[14, 22] "
                    "and n_outputs=4 (it fits the detector's own layers and bars)"
                )
            if self.dropout:
                # an ablation over a field the network ignores would report seed noise as an effect
                raise ConfigError(
                    f"BgoCnnConfig.dropout: the line_fit head has no dense layers, so dropout "
                    f"{self.dropout} would have no effect; use head='dense' to study dropout"
                )

    @property
    def task(self) -> Task:
        return "regression"


def build_bgo_cnn(config: BgoCnnConfig, name: str = "bgo_cnn", input_name: str = "x") -> Any:
    """The (uncompiled) BGO direction CNN of `config`."""
    keras = tf_keras()
    inputs = keras.Input(shape=(*config.image_shape, 1), dtype="float32", name=input_name)
    x = input_stack(inputs, config.input_channels)
    attention = (config.attention, config.attention_at, config.attention_kernel)
    if config.head == "line_fit":
        h = attend(x, 0, *attention, prefix="conv")
        for i, n in enumerate(config.conv_filters):
            h = keras.layers.Conv2D(
                n, config.kernel_size, padding="same", activation=config.activation, name=f"conv_{i + 1}"
            )(h)
            h = attend(h, i + 1, *attention, prefix="conv")
        outputs = line_fit_head(h, config)
        return keras.Model(inputs, outputs, name=name)
    h = conv_features(
        x,
        config.conv_filters,
        config.kernel_size,
        config.padding,
        config.pool_after,
        config.pool_size,
        config.activation,
        prefix="conv",
        attention=attention,
    )
    h = dense_stack(h, config.dense_units, config.activation, config.dropout, prefix="dense")
    h = keras.layers.Dense(config.n_outputs, activation="linear", name="track_scaled")(h)
    outputs = keras.layers.Rescaling(config.output_scale_mm, name="track")(h)
    return keras.Model(inputs, outputs, name=name)


def input_stack(image: Any, channels: tuple[str, ...]) -> Any:
    """The image as the configured channels: 'image' itself, 'log' = log1p(255 x) / log(256)."""
    import tensorflow as tf

    keras = tf_keras()
    parts = []
    for channel in channels:
        if channel == "image":
            parts.append(image)
        else:  # tf ops on Keras tensors become built-in TFOpLambda layers, saved by op name
            parts.append(tf.math.log1p(image * np.float32(255.0)) * np.float32(1.0 / np.log(256.0)))
    return parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="input_channels")(parts)


def _fixed_dense(units: int, kernel: np.ndarray, name: str) -> Any:
    """A frozen, bias-free Dense layer holding a geometry matrix (saved with the model's weights)."""
    keras = tf_keras()
    return keras.layers.Dense(
        units,
        use_bias=False,
        trainable=False,
        kernel_initializer=keras.initializers.Constant(np.asarray(kernel, np.float32).tolist()),
        name=name,
    )


def line_fit_head(h: Any, config: BgoCnnConfig) -> Any:
    """Per projection, the weighted least-squares line through learned pixel weights and positions.

    Per pixel: w = exp(clip(g)), position = bar centre + d (g, d: 1x1 convolutions of `h`).
    Per projection P (even layers: x, odd: y), with sums over its pixels, z the layer depth:
    S = sum w, Sz = sum w z, Szz = sum w z^2, Su = sum w u, Szu = sum w z u; then
    u(z) = u_mean + b (z - z_mean), b = (Szu - Sz Su / S) / (Szz - Sz^2 / S), evaluated at
    the STK reference planes. Units: config.output_scale_mm, depths from the BGO centre.
    """
    import tensorflow as tf

    keras = tf_keras()
    layers = keras.layers
    n_layers, n_bars = config.image_shape
    unit = config.output_scale_mm
    z0 = float(geo.BGO_LAYER_Z.mean())
    z = (geo.BGO_LAYER_Z - z0) / unit
    clip = config.line_fit_log_weight_clip
    g = layers.Conv2D(1, 1, name="log_weight")(h)
    d = layers.Conv2D(1, 1, name="shift")(h)
    w = tf.exp(tf.clip_by_value(g, -clip, clip))
    w = layers.Reshape((n_layers, n_bars), name="weight")(w)
    d = layers.Reshape((n_layers, n_bars), name="shift_per_bar")(d)
    ones = np.ones((n_bars, 1))
    w_row = layers.Flatten(name="row_weight")(_fixed_dense(1, ones, "row_sum")(w))
    wu_row = layers.Add(name="row_moment")(
        [
            _fixed_dense(1, geo.BGO_BAR_CENTRES[:, None] / unit, "row_bar_moment")(w),
            _fixed_dense(1, ones, "row_shift_moment")(layers.Multiply(name="weighted_shift")([w, d])),
        ]
    )
    wu_row = layers.Flatten(name="row_moment_flat")(wu_row)
    # per projection p: columns (S, Sz, Szz) of the weights and (Su, Szu) of the moments
    mw = np.zeros((n_layers, 6))
    mu = np.zeros((n_layers, 4))
    for p, rows in enumerate((geo.BGO_LAYER_MEASURES_X, ~geo.BGO_LAYER_MEASURES_X)):
        mw[rows, 3 * p : 3 * p + 3] = np.stack([np.ones(rows.sum()), z[rows], z[rows] ** 2], axis=1)
        mu[rows, 2 * p : 2 * p + 2] = np.stack([np.ones(rows.sum()), z[rows]], axis=1)
    sw = _fixed_dense(6, mw, "projection_weight_sums")(w_row)
    su = _fixed_dense(4, mu, "projection_moment_sums")(wu_row)
    eps = np.float32(1e-3)  # keeps a one-layer (degenerate) projection finite
    z_top, z_bot = np.float32((geo.Z_TOP - z0) / unit), np.float32((geo.Z_BOT - z0) / unit)
    ends = []
    for p in (0, 1):
        s, sz, szz = sw[:, 3 * p] + eps, sw[:, 3 * p + 1], sw[:, 3 * p + 2]
        su_p, szu = su[:, 2 * p], su[:, 2 * p + 1]
        z_mean, u_mean = sz / s, su_p / s
        slope = (szu - sz * u_mean) / (szz - sz * z_mean + eps)
        ends.append((u_mean + slope * (z_top - z_mean), u_mean + slope * (z_bot - z_mean)))
    track = tf.stack([ends[0][0], ends[1][0], ends[0][1], ends[1][1]], axis=1)  # x_top, y_top, x_bot, y_bot
    return layers.Rescaling(unit, name="track")(track)


def conv_features(
    x: Any,
    filters: tuple[int, ...],
    kernel_size: tuple[int, int],
    padding: str,
    pool_after: tuple[int, ...],
    pool_size: tuple[int, int],
    activation: str,
    prefix: str,
    attention: tuple[AttentionKind, tuple[int, ...], int] = ("dual", (), 7),
) -> Any:
    """The BGO image convolutions (shared with the HAMF image branch): convs, attention where
    configured (kind, positions, kernel: :func:`.attention.attend`), max pools, flatten."""
    keras = tf_keras()
    x = attend(x, 0, *attention, prefix=prefix)
    for i, n in enumerate(filters):
        x = keras.layers.Conv2D(
            n, kernel_size, padding=padding, activation=activation, name=f"{prefix}_{i + 1}"
        )(x)
        x = attend(x, i + 1, *attention, prefix=prefix)
        if i in pool_after:
            x = keras.layers.MaxPooling2D(pool_size, padding="same", name=f"{prefix}_pool_{i + 1}")(x)
    return keras.layers.Flatten(name=f"{prefix}_flatten")(x)


def with_alignment_head(
    model: Any,
    trainable_backbone: bool = False,
    learning_rate: float | None = None,
    compile: bool = True,
    scale_mm: float = 100.0,
) -> Any:
    """`model` followed by the paper's data/MC alignment layer: Dense(4), linear, identity-initialised.

    Kernel = I and bias = 0, so before training the new model gives exactly `model`'s outputs.
    The backbone (the whole of `model`, kept as one nested layer named like it) is frozen
    unless `trainable_backbone`; frozen, it also runs in inference mode. The result is compiled
    for regression (MSE, Adam at `learning_rate`, default 1e-4) unless `compile=False`.
    Training it on the flight-data clean selection is the training code's job. Note that
    `model` itself is frozen in place (its `trainable` flag is set), as Keras shares the layers.

    Our choice: the Dense layer works in units of `scale_mm` (fixed rescalings around it), so
    its bias (a shift of ~1 mm) and kernel (a tilt of ~1e-3) are both O(1e-2) and one Adam
    rate fits them; on raw mm the bias would need ~1000x the kernel's rate.
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
    scaled = keras.layers.Rescaling(1.0 / scale_mm, name="alignment_in")(features)
    out = keras.layers.Rescaling(scale_mm, name="alignment_out")(head(scaled))
    aligned = keras.Model(inputs[0] if len(inputs) == 1 else inputs, out, name=f"{model.name}_aligned")
    if compile:
        compile_model(aligned, "regression", learning_rate)
    return aligned
