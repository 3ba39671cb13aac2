"""Attention modules in the CNN builders: shapes, identity at initialisation, trainable, checked configs,
and a model with attention saved and loaded as data like any other."""

from __future__ import annotations

import numpy as np
import pytest

from dampeml.models.architecture import Architecture
from dampeml.models.catalog import build, get_network
from dampeml.models.config import ConfigError

CASES = [  # network, overrides
    ("bgo-direction-low", {"attention_at": [0, 2], "attention": "dual", "attention_kernel": 4}),
    ("bgo-direction-low", {"attention_at": [1], "attention": "channel"}),
    ("electron-proton", {"cnn_attention_at": [0, 1], "cnn_attention": "spatial", "cnn_attention_kernel": 1}),
    ("stk-hough-coarse", {"attention_at": [0, 3], "attention_kernel": 7}),
]


def _inputs(model, n=3, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for tensor, name in zip(model.inputs, model.input_names, strict=True):
        shape = (n, *tensor.shape[1:])
        if tensor.dtype == "uint8":
            out[name] = rng.integers(0, 255, shape).astype(np.uint8)
        else:
            out[name] = rng.random(shape).astype(np.float32)
    return out


@pytest.mark.parametrize(("network", "overrides"), CASES)
def test_attention_starts_as_the_identity_and_adds_maps_of_the_right_shape(network, overrides):
    """With the weights of the network without attention, the network with it gives the same outputs
    (every module starts at weight 1); each map has one weight per pixel or per channel."""
    from dampeml.models.attention import attention_maps
    from dampeml.models.common import tf_keras

    keras = tf_keras()
    plain = build(network, preset="small")
    attended = build(network, preset="small", overrides=overrides)
    for layer in plain.layers:
        if layer.weights:  # (op layers have generated names, and no weights)
            attended.get_layer(layer.name).set_weights(layer.get_weights())
    x = _inputs(plain)
    a, b = plain.predict(x, verbose=0), attended.predict(x, verbose=0)
    print(f"\n{network} {overrides}: largest difference {np.abs(a - b).max():.1e}")
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)

    names = attention_maps(attended)
    at = overrides.get("attention_at", overrides.get("cnn_attention_at"))
    kind = overrides.get("attention", overrides.get("cnn_attention", "dual"))
    per_position = 2 if kind == "dual" else 1
    assert len(names) == per_position * len(at)
    maps = keras.Model(attended.inputs, [attended.get_layer(n).output for n in names]).predict(x, verbose=0)
    maps = maps if len(names) > 1 else [maps]
    for name, m in zip(names, maps, strict=True):
        features = attended.get_layer(name.replace("_map", "_out")).input[0]  # what the map weighs
        if name.endswith("_spatial_map"):
            assert m.shape[1:] == (*features.shape[1:3], 1), name
        else:
            assert m.shape[1:] == (features.shape[-1],), name
        np.testing.assert_allclose(m, 1.0, atol=1e-7)  # 2 sigmoid(0) everywhere at the start


def test_the_zero_initialised_layers_get_gradients():
    """A module that starts at zero must still learn: its zero-initialised last layer (the MLP's second
    layer, the spatial convolution) gets a non-zero gradient; the MLP's first layer follows once the
    second has moved off zero (the MLP's second kernel gets a gradient only where some hidden unit is
    alive: seeded, so that the check does not depend on the tests run before)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(7)
    model = build("bgo-direction-low", preset="small", overrides={"attention_at": [1], "attention": "dual"})
    x = _inputs(model, n=16)["x"]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True) ** 2)
    new = [v for v in model.trainable_variables if "attention" in v.name]
    grads = dict(zip([v.name for v in new], tape.gradient(loss, new), strict=True))
    print("\n" + ", ".join(f"{k}: {float(tf.norm(g)):.2e}" for k, g in grads.items()))
    starts_at_zero = {k: g for k, g in grads.items() if "_conv/" in k or "_mlp_2/" in k}
    assert len(starts_at_zero) == 4
    assert all(float(tf.norm(g)) > 0 for g in starts_at_zero.values())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"attention_at": [5]}, r"attention_at: positions are 0 \(the input\) or 1..2"),
        ({"attention_at": [1, 1]}, "each once"),
        ({"attention_kernel": 0}, "attention_kernel: must be >= 1"),
        ({"attention": "temporal"}, "expected one of"),
    ],
)
def test_bad_attention_settings_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        get_network("bgo-direction-low").config_for("small", overrides)


def test_a_model_with_attention_saves_and_loads_as_data(tmp_path):
    """Saved and loaded through the safe loader (our builder makes the network, the file gives tensors)."""
    from dampeml.security import load_weights_only

    arch = Architecture("electron-proton", "small", {"cnn_attention_at": [1], "cnn_attention": "dual"})
    model = arch.build()
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    model.save(tmp_path / "m.keras")
    again = arch.build()
    load_weights_only(again, str(tmp_path / "m.keras"), "test model")
    x = _inputs(model)
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
