"""The network catalog and builders: shapes, learning, presets, ablation overrides, alignment, saving."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

import dampeml  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from dampeml.datasets.loader import INPUTS
from dampeml.models import (
    NETWORK_NAMES,
    BgoCnnConfig,
    ConfigError,
    HamfConfig,
    HoughCnnConfig,
    RawStkCnnConfig,
    UnknownNetworkError,
    aligned_name,
    build,
    get_network,
    with_alignment_head,
)

keras = pytest.importorskip("tf_keras")

STEPS = 25
LEARNING_RATE = 1e-3  # faster than the paper's 1e-4, so the loss moves within STEPS steps

EXPECTED = {  # name: ({input: (shape, dtype)}, output shape)
    "bgo-direction-low": ({"x": ((14, 22, 1), "float32")}, (4,)),
    "bgo-direction-mid": ({"x": ((14, 22, 1), "float32")}, (4,)),
    "bgo-direction-high": ({"x": ((14, 22, 1), "float32")}, (4,)),
    "stk-hough-coarse": ({"x": ((400, 400, 4), "uint8")}, (4,)),
    "stk-hough-precise": ({"x": ((400, 400, 4), "uint8")}, (4,)),
    "inelastic-raw-stk": ({"x": ((24, 3072, 1), "uint8")}, (1,)),
    "inelastic-hough": ({"x": ((400, 400, 4), "uint8")}, (1,)),
    "electron-proton": ({"x_image": ((14, 22, 1), "float32"), "x_vars": ((34,), "float32")}, (1,)),
    "electron-proton-cnn": ({"x_image": ((14, 22, 1), "float32")}, (1,)),
    "electron-proton-dnn": ({"x_vars": ((34,), "float32")}, (1,)),
    "bgo-energy": ({"x_image": ((14, 22, 1), "float32"), "x_vars": ((34,), "float32")}, (1,)),
}


def synthetic_batch(name: str, n: int | None = None, seed: int = 0) -> tuple[dict, np.ndarray]:
    """Inputs shaped like the loader's batches, and targets that are a learnable function of them."""
    rng = np.random.default_rng(seed)
    kind = get_network(name).dataset_kind
    if n is None:  # the big images: fewer events, to keep the CPU steps fast
        n = 16 if kind in ("bgo-direction", "electron-proton", "bgo-energy") else 8
    if kind == "bgo-direction":
        x = rng.random((n, 14, 22, 1), dtype=np.float32)
        w = rng.normal(0, 1, (14 * 22, 4)).astype(np.float32)
        return {"x": x}, x.reshape(n, -1) @ w  # a linear function of the image
    if kind in ("stk-hough", "inelastic-hough"):
        x = np.zeros((n, 400, 400, 4), np.uint8)
        centre = rng.integers(140, 260, (n, 2))
        for i, (a, b) in enumerate(centre):  # a bright crossing, as where a track's lines meet
            x[i, a - 8 : a + 8, b - 8 : b + 8, 0] = 252
        y = np.concatenate([centre, centre], axis=1).astype(np.float32)
        if kind == "inelastic-hough":
            y = (centre[:, :1] > 200).astype(np.float32)
        return {"x": x}, y
    if kind == "inelastic-raw-stk":
        x = np.zeros((n, 24, 3072, 1), np.uint8)
        y = (np.arange(n) % 2).astype(np.float32)[:, None]
        for i in range(n):  # "interacting" events: many more, stronger clusters
            hits = rng.integers(0, 24 * 3072, 300 if y[i, 0] else 24)
            x[i].reshape(-1)[hits] = 160 if y[i, 0] else 16
        return {"x": x}, y
    x_image = rng.random((n, 14, 22, 1), dtype=np.float32)
    x_vars = np.abs(rng.normal(0, 1, (n, 34))).astype(np.float32) * 10
    x_vars[:, 0] = 10.0 ** rng.uniform(4, 8, n)  # total energy, MeV
    signal = x_vars[:, 31] + x_image[:, :4].mean(axis=(1, 2, 3)) * 10
    y = (signal < 12).astype(np.float32)[:, None] if kind == "electron-proton" else 0.01 * signal[:, None]
    both = {"x_image": x_image, "x_vars": x_vars}
    return {k: both[k] for k in get_network(name).input_keys}, y


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_small_preset_shapes_and_learning(name):
    spec = get_network(name)
    model = build(name, preset="small", learning_rate=LEARNING_RATE)
    inputs, out_shape = EXPECTED[name]
    assert set(spec.input_keys) == set(inputs) == set(model.input_names)
    for tensor, input_name in zip(model.inputs, model.input_names, strict=True):
        assert (tuple(tensor.shape[1:]), tensor.dtype.name) == inputs[input_name]
    assert tuple(model.output_shape[1:]) == out_shape

    x, y = synthetic_batch(name)
    t0 = time.perf_counter()
    before = model.evaluate(x, y, batch_size=len(y), verbose=0, return_dict=True)
    model.fit(x, y, batch_size=len(y), epochs=STEPS, shuffle=False, verbose=0)
    after = model.evaluate(x, y, batch_size=len(y), verbose=0, return_dict=True)
    print(
        f"{name}: loss {before['loss']:.4g} -> {after['loss']:.4g} in {STEPS} steps "
        f"({time.perf_counter() - t0:.1f} s, {model.count_params()} params)"
    )
    assert after["loss"] < before["loss"]
    expected_metrics = {"mae"} if spec.task == "regression" else {"auc", "accuracy"}
    assert expected_metrics <= set(after)


def test_catalog_matches_the_loader_kinds():
    kinds = {get_network(n).dataset_kind for n in NETWORK_NAMES}
    assert kinds == set(INPUTS)
    assert {get_network(n).task for n in NETWORK_NAMES} == {"regression", "classification"}


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("bgo-direction-mid", 1e6, 3e6),
        ("stk-hough-precise", 1e6, 3e6),
        ("inelastic-hough", 1e6, 3e6),
        ("inelastic-raw-stk", 1e5, 3e5),
        ("electron-proton", 2e5, 1e6),
    ],
)
def test_full_presets_build(name, low, high):
    model = build(name, preset="full")
    print(f"{name} full: {model.count_params()} params")
    assert low < model.count_params() < high


def test_raw_stk_full_preset_is_the_papers_layer_list():
    config = get_network("inelastic-raw-stk").config
    assert config.map_before_final() == (3, 85)  # the "Conv2D 3x85 (full image)"
    model = build("inelastic-raw-stk", preset="full", compile=False)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.kernel_size for c in convs] == [(1, 4)] * 5 + [(8, 4)] * 3 + [(3, 85)]
    assert [c.strides for c in convs] == [(1, 2)] * 5 + [(1, 1)] * 4
    assert [c.filters for c in convs] == [32, 16, 32, 16, 32, 16, 32, 16, 20]
    assert tuple(model.get_layer("conv_full").output.shape[1:]) == (1, 1, 20)
    dense = [layer.units for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [100, 50, 1]
    assert [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == [0.1, 0.1]


def test_filter_shape_override_changes_the_kernel():
    default = build("bgo-direction-low", preset="full", compile=False)
    assert default.get_layer("conv_1").kernel.shape[:2] == (4, 4)
    model = build("bgo-direction-low", preset="full", overrides={"kernel_size": [3, 5]}, compile=False)
    assert model.get_layer("conv_1").kernel.shape[:2] == (3, 5)
    assert get_network("bgo-direction-low").config_for("full", {"kernel_size": [3, 5]}).kernel_size == (3, 5)


def test_hough_channels_and_head_are_config():
    model = build("stk-hough-precise", overrides={"input_channels": 2}, compile=False)
    assert tuple(model.inputs[0].shape[1:]) == (400, 400, 2)
    classifier = build("stk-hough-precise", overrides={"head": "classifier"}, compile=False)
    assert classifier.output_shape == (None, 1)
    assert classifier.layers[-1].get_config()["activation"] == "sigmoid"
    regression = build("stk-hough-precise", compile=False)
    np.testing.assert_allclose(regression.get_layer("offsets").bias.numpy(), 200.0)


def test_pooled_input_twin_gives_the_same_outputs_from_the_pooled_image():
    """The chain runs input-pooled Hough networks as twins fed the max-pooled 8-bit image: the
    same weights and, on the same images, the same outputs; a model without input pooling (the
    full preset) is returned unchanged."""
    from dampeml.features.hough import max_pool
    from dampeml.models.hough_cnn import pooled_input_twin

    model = build("stk-hough-coarse", preset="small", compile=False)
    twin, k = pooled_input_twin(model)
    assert k == model.get_layer("input_pool").pool_size[0] > 1
    assert (
        tuple(twin.inputs[0].shape[1:]) == (400 // k, 400 // k, 4) and twin.input_names == model.input_names
    )
    assert twin.count_params() == model.count_params()
    rng = np.random.default_rng(3)
    images = np.where(rng.random((4, 400, 400, 4)) < 0.02, rng.integers(42, 256, (4, 400, 400, 4)), 0)
    images = images.astype(np.uint8)
    full = model(images, training=False).numpy()
    np.testing.assert_allclose(twin(max_pool(images, k), training=False).numpy(), full, rtol=1e-6, atol=1e-4)
    assert np.ptp(full, axis=0).max() > 1e-3  # the images differ, and so do the outputs
    unpooled = build("stk-hough-coarse", preset="full", compile=False)
    assert pooled_input_twin(unpooled) == (unpooled, 1)


def test_alignment_head_starts_as_identity_and_trains_alone():
    base = build("bgo-direction-low", learning_rate=LEARNING_RATE)
    aligned = with_alignment_head(base, learning_rate=LEARNING_RATE)
    x, _ = synthetic_batch("bgo-direction-low", n=32, seed=3)
    y_base = base.predict(x, verbose=0)
    np.testing.assert_allclose(aligned.predict(x, verbose=0), y_base, rtol=1e-6, atol=1e-6)
    assert [w.name.split("/")[0] for w in aligned.trainable_weights] == ["alignment", "alignment"]
    frozen = [w.numpy().copy() for w in base.weights]
    aligned.fit(x, y_base + np.array([1.0, -2.0, 0.5, 3.0], np.float32), epochs=3, verbose=0)
    for before, after in zip(frozen, base.weights, strict=True):
        np.testing.assert_array_equal(before, after.numpy())
    assert not np.allclose(aligned.get_layer("alignment").bias.numpy(), 0.0)
    assert aligned_name("bgo-direction-low") == "bgo-direction-low-aligned"
    with pytest.raises(ValueError, match="only the BGO direction"):
        aligned_name("inelastic-hough")
    trainable = with_alignment_head(build("bgo-direction-low"), trainable_backbone=True)
    assert len(trainable.trainable_weights) > 2


def test_unknown_network_lists_known_names():
    with pytest.raises(UnknownNetworkError) as err:
        get_network("bgo-direction-ultra")
    for name in NETWORK_NAMES:
        assert name in str(err.value)
    assert isinstance(err.value, ValueError)
    with pytest.raises(UnknownNetworkError, match="with_alignment_head"):
        build("bgo-direction-mid-aligned")


def test_unknown_or_wrong_config_keys_are_rejected():
    with pytest.raises(ConfigError, match=r"'filtres'.*did you mean 'conv_filters'") as err:
        BgoCnnConfig.from_dict({"filtres": [8, 16]})
    assert "known keys: learning_rate" in str(err.value)
    with pytest.raises(ConfigError, match="'dropuot'"):
        build("inelastic-raw-stk", overrides={"dropuot": 0.2})
    with pytest.raises(ConfigError, match=r"HoughCnnConfig.dropout: expected a number"):
        HoughCnnConfig.from_dict({"dropout": "ten percent"})
    with pytest.raises(ConfigError, match=r"head: expected one of"):
        HoughCnnConfig.from_dict({"head": "softmax"})
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\)"):
        RawStkCnnConfig(dropout=1.5)
    with pytest.raises(ConfigError, match="shrinks"):
        RawStkCnnConfig(reduction_filters=(8,) * 12)
    with pytest.raises(ConfigError, match="line_fit head has no dense layers"):  # an ablation of nothing
        build("bgo-direction-low", overrides={"dropout": 0.1})
    with pytest.raises(ConfigError, match="no entry for variable 'zeta'"):
        HamfConfig(
            variable_names=("total_mev", "zeta"), variable_transform=(("total_mev", "log1p", 14.0, 4.0),)
        )


@pytest.mark.parametrize(
    "name", ["bgo-direction-low", "stk-hough-coarse", "inelastic-raw-stk", "electron-proton"]
)
def test_configs_round_trip_through_yaml(name):
    config = get_network(name).config
    text = yaml.safe_dump(config.to_dict())
    assert type(config).from_yaml(text) == config


def test_hamf_attention_weights_are_a_softmax():
    model = build("electron-proton", compile=False)
    x, _ = synthetic_batch("electron-proton", n=8)
    weights = keras.Model(model.inputs, model.get_layer("attention_weights").output).predict(x, verbose=0)
    assert weights.shape == (8, 3)  # image, variables, cross-modal
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-5)
    # the fixed variable transform brings raw shower variables (MeV, mm, counts) to O(1), NaN to finite
    transform = keras.Model(model.inputs[1], model.get_layer("dnn_1").input)
    raw = np.zeros((2, 34), np.float32)
    raw[:, 0] = [1e4, 4e8]  # total energy, MeV: a 10 GeV and a ~1 PeV deposit
    raw[:, 1:15] = 1 / 14  # layer fractions
    raw[:, 15:29] = [[15.0], [150.0]]  # RMS widths, mm
    raw[:, 29:34] = [[3, 1, 5.0, 4.2, 40], [9, 2, 300.0, 7.5, 300]]
    raw[1, 20] = np.nan
    y = transform.predict(raw, verbose=0)
    assert np.all(np.isfinite(y)) and np.abs(y).max() < 4, y
    concat = build("electron-proton", overrides={"fusion": "concat", "gating": False}, compile=False)
    assert "attention_weights" not in [layer.name for layer in concat.layers]


def test_models_save_and_reload_with_identical_outputs(tmp_path):
    hamf = build("electron-proton")
    x_hamf, _ = synthetic_batch("electron-proton", n=8)
    aligned = with_alignment_head(build("bgo-direction-high"))
    x_bgo, _ = synthetic_batch("bgo-direction-high", n=8)
    raw = build("inelastic-raw-stk")
    x_raw, _ = synthetic_batch("inelastic-raw-stk", n=4)
    for model, x, file in [
        (hamf, x_hamf, "hamf.keras"),
        (aligned, x_bgo, "aligned.keras"),
        (raw, x_raw, "raw.keras"),
    ]:
        model.save(tmp_path / file)
        loaded = keras.models.load_model(tmp_path / file, safe_mode=True)
        np.testing.assert_allclose(
            loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6
        )
        assert loaded.optimizer is not None and loaded.loss is not None

    # a fresh interpreter that never imported dampeml.models loads it too (as the training loop does)
    code = (
        "import dampeml, sys, tf_keras as k; "
        f"m = k.models.load_model({str(tmp_path / 'hamf.keras')!r}, safe_mode=True); "
        "print(sorted(sys.modules.keys() & {'dampeml.models', 'dampeml.models.hamf'}), m.count_params())"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith(f"[] {hamf.count_params()}")
