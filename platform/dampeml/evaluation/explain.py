"""Where a network looks: gradient maps and the network's own attention maps, drawn over its input.

At a convolution layer with feature maps A_k (k: channel) and gradients g_k = d(score)/dA_k:
- `layer-cam` (the default; Jiang et al. 2021, LayerCAM): per pixel, sum_k relu(g_k) A_k;
- `grad-cam` (Selvaraju et al. 2017): sum_k mean_pixels(g_k) A_k, its positive part.
For a classifier the score is its logit, signed for the class it predicts (positive gradients:
evidence for what it decided; the logit, because a saturated sigmoid has no gradient left). For a
regression (a track, Hough offsets) no sign means "evidence": |g_k| and the map's absolute value,
per output, each scaled to a sum of 1, then averaged over the outputs. Every map is brought to the
input image's size (bilinear) and scaled to a sum of 1 per event, so maps of different layers and
networks read alike: the share of the network's attention that falls on a pixel.

Why LayerCAM by default: Grad-CAM's one weight per channel also weighs what a channel shows on
empty pixels (its bias, after the ReLU), which spreads its map over the whole image. Measured on
the reference zoo's BGO network (300 protons, 0.1-1 TeV): 94% of the LayerCAM map within one bar
of the true track (13.5% of the pixels), 15% of Grad-CAM's; on its coarse Hough network (within
16 pixels of the true track's points, 0.8% of the pixels) 18% against 5% (the untrained
networks: 20% and 4%). tests/test_explain.py checks these on fresh events.

Default layer: the last convolution whose output keeps at least MIN_MAP_PIXELS pixels on its
shorter side (the Hough networks pool 400 pixels down to 4: too coarse to point at a track), else
the last convolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dampeml.datasets.loader import DatasetError, check_split, load_manifest, network_batch, stored_batches
from dampeml.errors import InputError
from dampeml.features.hough import select_roi_hits
from dampeml.models.attention import attention_maps
from dampeml.models.catalog import ALIGNED_SUFFIX, get_network
from dampeml.models.common import tf_keras
from dampeml.reconstruction.chain import ENERGY_RANGES, bgo_input, hough_input, shower_input
from dampeml.registry.models import load_model

MIN_MAP_PIXELS = 16
#: gradient map methods (module docstring)
METHODS = ("layer-cam", "grad-cam")


class ExplainError(InputError):
    """A model, layer or input that the maps cannot be computed for."""


@dataclass
class Explanation:
    """Per event: the input image (H, W, C), the gradient map and the spatial attention maps (H, W)."""

    images: np.ndarray
    gradient: np.ndarray
    method: str  # "<method>, <layer>"
    attention: dict[str, np.ndarray]
    outputs: np.ndarray


def image_input(model: Any) -> int:
    """Index of the model's image input (the first of rank 4)."""
    for i, tensor in enumerate(model.inputs):
        if len(tensor.shape) == 4:
            return i
    raise ExplainError(f"{model.name} has no image input: nothing to draw a map over")


def default_layer(model: Any) -> str:
    """The last Conv2D with at least MIN_MAP_PIXELS pixels on its shorter side (else the last Conv2D)."""
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D" and layer.filters > 1]
    if not convs:
        raise ExplainError(f"{model.name} has no convolution layer for Grad-CAM")
    wide = [layer for layer in convs if min(layer.output.shape[1:3]) >= MIN_MAP_PIXELS]
    return (wide or convs)[-1].name


def _normalised(maps: np.ndarray) -> np.ndarray:
    """Each event's map scaled to a sum of 1 (an all-zero map stays zero)."""
    total = maps.reshape(len(maps), -1).sum(axis=1)
    return maps / np.where(total > 0, total, 1.0)[:, None, None]


def _to_input_size(maps: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import tensorflow as tf

    if maps.shape[1:3] == tuple(shape):
        return maps
    return tf.image.resize(maps[..., None], shape, method="bilinear").numpy()[..., 0]


def gradient_map(
    model: Any, inputs: Any, layer: str | None = None, method: str = "layer-cam"
) -> tuple[np.ndarray, str, np.ndarray]:
    """(maps at the input image's size, each summing to 1; the layer used; the model's outputs)."""
    import tensorflow as tf

    keras = tf_keras()
    layer = layer or default_layer(model)
    try:
        features = model.get_layer(layer).output
    except ValueError:
        raise ExplainError(f"{model.name} has no layer {layer!r}; e.g. {default_layer(model)!r}") from None
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r}: use one of {list(METHODS)}")
    last = model.layers[-1]
    classification = (
        model.outputs[0].shape[-1] == 1
        and type(last).__name__ == "Dense"
        and last.get_config().get("activation") == "sigmoid"
    )
    # a classifier's score is its logit (a saturated sigmoid has no gradient left), signed for the
    # class it predicts: the map shows the evidence for what the network decided
    probe = keras.Model(model.inputs, [features, last.input if classification else model.outputs[0]])
    with tf.GradientTape(persistent=True) as tape:
        a, y = probe(inputs, training=False)
        if classification:
            logit = tf.matmul(y, last.kernel) + last.bias
            y = tf.sigmoid(logit)
            scores = [logit[:, 0] * tf.where(logit[:, 0] >= 0, 1.0, -1.0)]
        else:
            scores = [y[:, j] for j in range(y.shape[-1])]
    maps = []
    for score in scores:
        g = tape.gradient(score, a)
        if method == "grad-cam":
            cam = tf.reduce_sum(tf.reduce_mean(g, axis=(1, 2), keepdims=True) * a, axis=-1).numpy()
        else:  # layer-cam: per pixel
            cam = tf.reduce_sum((tf.nn.relu(g) if classification else tf.abs(g)) * a, axis=-1).numpy()
        maps.append(_normalised(np.maximum(cam, 0.0) if classification else np.abs(cam)))
    del tape
    shape = tuple(model.inputs[image_input(model)].shape[1:3])
    return _normalised(_to_input_size(np.mean(maps, axis=0), shape)), layer, y.numpy()


def spatial_attention(model: Any, inputs: Any) -> dict[str, np.ndarray]:
    """{layer: spatial attention map per event at the input image's size, scaled to a sum of 1}."""

    names = [n for n in attention_maps(model) if n.endswith("_spatial_map")]
    if not names:
        return {}
    keras = tf_keras()
    outs = keras.Model(model.inputs, [model.get_layer(n).output for n in names]).predict(inputs, verbose=0)
    outs = outs if len(names) > 1 else [outs]
    shape = tuple(model.inputs[image_input(model)].shape[1:3])
    return {n: _normalised(_to_input_size(m[..., 0], shape)) for n, m in zip(names, outs, strict=True)}


def explain_maps(model: Any, inputs: Any, layer: str | None = None, method: str = "layer-cam") -> Explanation:
    """The gradient map and the attention maps of `model` on `inputs` (an array or {input name: array})."""
    cam, used, outputs = gradient_map(model, inputs, layer, method)
    key = image_input(model)
    images = inputs if not isinstance(inputs, dict) else inputs[model.input_names[key]]
    return Explanation(
        np.asarray(images), cam, f"{method}, {used}", spatial_attention(model, inputs), outputs
    )


def share_within(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per event, the share of the map inside `mask` (same shape as `maps`)."""
    return (maps * mask).reshape(len(maps), -1).sum(axis=1)


def draw(
    explanation: Explanation, out: str | Path, titles: list[str] | None = None, channel: int = 0
) -> Path:
    """One row per event: the input (its `channel`), the gradient map over it, each attention map over it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = explanation
    maps = [(e.method, e.gradient), *((name, m) for name, m in e.attention.items())]
    n = len(e.images)
    fig, axes = plt.subplots(n, 1 + len(maps), figsize=(3.2 * (1 + len(maps)), 2.6 * n), squeeze=False)
    for i in range(n):
        image = np.asarray(e.images[i, ..., channel], dtype=np.float32)
        axes[i, 0].imshow(image, aspect="auto", origin="upper", cmap="gray_r", interpolation="nearest")
        axes[i, 0].set_title((titles[i] if titles else f"event {i}") + f" (channel {channel})", fontsize=7)
        for ax, (name, m) in zip(axes[i, 1:], maps, strict=True):
            ax.imshow(image, aspect="auto", origin="upper", cmap="gray_r", interpolation="nearest")
            ax.imshow(
                m[i], aspect="auto", origin="upper", cmap="inferno", alpha=0.6, interpolation="bilinear"
            )
            ax.set_title(name, fontsize=7)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def network_of(name: str) -> str:
    """The catalog network of a registered or zoo name (an aligned BGO model is its network's)."""

    return name.removesuffix(ALIGNED_SUFFIX)


def event_inputs(network: str, events: dict) -> Any:
    """The inputs of `network` computed from events as read (the BGO networks' and HAMF's, whose
    input is the event itself); the Hough and raw-STK networks' inputs need the chain's seed track
    or RoI: ExplainError pointing to a dataset of them."""

    spec = get_network(network)
    image = bgo_input(np.asarray(events["bgo_energy"]))
    if spec.dataset_kind == "bgo-direction":
        return image
    if spec.family == "hamf":
        both = {"x_image": image, "x_vars": shower_input(np.asarray(events["bgo_energy"]))}
        return both[spec.input_keys[0]] if len(spec.input_keys) == 1 else both
    raise ExplainError(
        f"{network}: its input is made around the chain's track (a {spec.dataset_kind} image); explain it "
        f"on a dataset of its kind instead (--dataset URI, e.g. from `dampeml dataset build`)"
    )


def dataset_inputs(network: str, uri: str, split: str, n: int) -> tuple[Any, np.ndarray]:
    """(inputs, targets) of the first `n` stored events of a dataset split, as the network reads them."""

    spec = get_network(network)
    manifest = load_manifest(uri)
    if manifest["kind"] != spec.dataset_kind:
        raise DatasetError(f"{uri} is a {manifest['kind']!r} dataset; {network} reads {spec.dataset_kind!r}")
    check_split(uri, manifest, split)
    batch = network_batch(next(stored_batches(uri, split, rows=n)), manifest)
    keys = spec.input_keys
    return (batch[keys[0]] if len(keys) == 1 else {k: batch[k] for k in keys}), batch["y"]


def chain_explanations(chain, events: dict, out: Path, n: int = 4) -> list[tuple[str, str]]:
    """The report's maps: the chain's BGO network (the energy range most of `events` fall in), its
    coarse Hough network on the image around the chain's own seed, and its electron/proton network,
    each on `n` of `events` (as read). Returns [(title, PNG name in `out`)]; networks the chain lacks
    are left out."""

    def model(name):
        return load_model(f"models:/{name}/{chain.versions[name]}") if name in chain.versions else None

    energy = np.asarray(events["bgo_energy"], dtype=np.float32)
    deposit = energy.sum(axis=(1, 2), dtype=np.float64)
    which = chain.bgo_range(deposit, chain.config)
    common = int(np.bincount(which).argmax())
    bgo_rows = np.flatnonzero(which == common)[:n]
    rows = np.arange(min(n, len(energy)))
    subset = {k: v[rows] for k, v in events.items()}

    def titles(idx):
        return [f"event {events['event_id'][i]}, {deposit[i] / 1e6:.2g} TeV deposited" for i in idx]

    figures = []
    bgo_name = f"bgo-direction-{ENERGY_RANGES[common]}"
    if (net := model(bgo_name)) is not None:
        maps = explain_maps(net, event_inputs(bgo_name, {"bgo_energy": energy[bgo_rows]}))
        figures.append((f"{bgo_name} (BGO image)", draw(maps, out / "explain_bgo.png", titles(bgo_rows))))
    if (net := model("stk-hough-coarse")) is not None:
        c = chain.config
        seed = chain.seed_track(subset)
        hits = select_roi_hits(subset["stk_layer"], subset["stk_pos"], subset["stk_signal"], seed, c.coarse)
        maps = explain_maps(net, hough_input(hits, seed, c.coarse, c.zthr))
        path = draw(maps, out / "explain_hough_coarse.png", titles(rows), channel=0)
        figures.append(("stk-hough-coarse (Hough image around the chain's seed; x view, q < Zthr)", path))
    if (net := model("electron-proton")) is not None:
        maps = explain_maps(net, event_inputs("electron-proton", {"bgo_energy": energy[rows]}))
        figures.append(
            ("electron-proton (its BGO image branch)", draw(maps, out / "explain_ep.png", titles(rows)))
        )
    return [(title, path.name) for title, path in figures]
