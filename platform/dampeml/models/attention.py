"""Spatial and channel attention for the CNN builders (seed 002, CTLearn's dual attention).

Both are the CBAM modules (Woo et al. 2018), as CTLearn uses them:
- channel attention: the feature map's global average and maximum over the pixels go through one
  shared two-layer MLP (C -> C/8 -> C); their sum gives one weight per channel;
- spatial attention: the mean and the maximum over the channels (two maps) go through one
  k x k convolution; it gives one weight per pixel (k: 1, 4 or 7 in the seed's ablation);
- dual: channel, then spatial.

Our choice: a weight is 2 sigmoid(a), and the layer that makes `a` (the MLP's last layer, the
spatial convolution) starts at zero, so every module starts as the identity (weight 1). A
network with attention starts as the same network without it, trains from there, and can take
the weights of a trained network without attention (`transfer`: only the new layers are new).
The maps are layers named `<prefix>_channel_map` and `<prefix>_spatial_map`, so a sub-model can
read them (`dampeml.evaluation.explain`).

Positions (`attention_at` in the configs): 0 is the network's input, i >= 1 is the output of
convolution i. Every op is a built-in Keras layer or a TensorFlow op (saved by its name), as in the
rest of the builders: nothing to import before loading a model.
"""

from __future__ import annotations

from typing import Any, Literal

from dampeml.models.common import tf_keras
from dampeml.models.config import ConfigError, ModelConfig

AttentionKind = Literal["spatial", "channel", "dual"]
#: hidden width of the channel MLP: C / this (at least 1)
CHANNEL_REDUCTION = 8


def check_attention(
    config: ModelConfig, at: tuple[int, ...], kernel: int, n_convs: int, field: str = "attention"
) -> None:
    """ConfigError unless every position is the input (0) or a convolution (1..n_convs), once;
    `field`: the config's name for them (`<field>_at`, `<field>_kernel`)."""
    name = f"{type(config).__name__}.{field}"
    bad = [p for p in at if not 0 <= p <= n_convs]
    if bad or len(set(at)) != len(at):
        raise ConfigError(
            f"{name}_at: positions are 0 (the input) or 1..{n_convs} (after that convolution), "
            f"each once; got {list(at)}"
        )
    if kernel < 1:
        raise ConfigError(f"{name}_kernel: must be >= 1, got {kernel}")


def _gate(a: Any, prefix: str, kind: str) -> Any:
    """2 sigmoid(a), the layer `<prefix>_<kind>_map`: weights in (0, 2), 1 where a = 0."""
    keras = tf_keras()
    sigmoid = keras.layers.Activation("sigmoid", name=f"{prefix}_{kind}_sigmoid")(a)
    return keras.layers.Rescaling(2.0, name=f"{prefix}_{kind}_map")(sigmoid)


def channel_attention(x: Any, prefix: str) -> Any:
    """x times one weight per channel, from its average- and max-pooled values (shared MLP)."""
    keras = tf_keras()
    channels = x.shape[-1]
    hidden = keras.layers.Dense(
        max(1, channels // CHANNEL_REDUCTION), activation="relu", name=f"{prefix}_mlp_1"
    )
    out = keras.layers.Dense(
        channels, kernel_initializer="zeros", bias_initializer="zeros", name=f"{prefix}_mlp_2"
    )
    avg = keras.layers.GlobalAveragePooling2D(name=f"{prefix}_avg")(x)
    peak = keras.layers.GlobalMaxPooling2D(name=f"{prefix}_max")(x)
    a = keras.layers.Add(name=f"{prefix}_channel_sum")([out(hidden(avg)), out(hidden(peak))])
    weights = keras.layers.Reshape((1, 1, channels), name=f"{prefix}_channel_weights")(
        _gate(a, prefix, "channel")
    )
    return keras.layers.Multiply(name=f"{prefix}_channel_out")([x, weights])


def spatial_attention(x: Any, kernel: int, prefix: str) -> Any:
    """x times one weight per pixel, from the mean and the maximum over its channels (k x k conv)."""
    import tensorflow as tf

    keras = tf_keras()
    pooled = keras.layers.Concatenate(name=f"{prefix}_pooled")(
        [tf.reduce_mean(x, axis=-1, keepdims=True), tf.reduce_max(x, axis=-1, keepdims=True)]
    )
    a = keras.layers.Conv2D(
        1, kernel, padding="same", kernel_initializer="zeros", bias_initializer="zeros", name=f"{prefix}_conv"
    )(pooled)
    return keras.layers.Multiply(name=f"{prefix}_spatial_out")([x, _gate(a, prefix, "spatial")])


def attend(x: Any, position: int, kind: AttentionKind, at: tuple[int, ...], kernel: int, prefix: str) -> Any:
    """`x` through the configured module when `position` is one of `at`, else `x` itself."""
    if position not in at:
        return x
    name = f"{prefix}_attention_{position}"
    if kind in ("channel", "dual"):
        x = channel_attention(x, name)
    if kind in ("spatial", "dual"):
        x = spatial_attention(x, kernel, name)
    return x


def attention_maps(model: Any) -> list[str]:
    """Names of the attention map layers of `model`, input side first."""
    return [layer.name for layer in model.layers if layer.name.endswith(("_channel_map", "_spatial_map"))]
