"""HAMF electron/proton classifier (seed 001: Hierarchical Attention-based Multimodal Fusion).

Inputs: "x_image", the 14x22x1 BGO image (float32, bar / hottest bar), and "x_vars", the 34
raw shower variables of :mod:`dampeml.features.shower_variables`. Output: P(electron), sigmoid;
BCE.

What seed 001 gives (slides, no layer list): a CNN feature extractor on the BGO image and a
DNN extractor on calibrated shower variables; "extraction and gating" that "refines feature
importance"; a "hierarchical attention fusion" that "weights each detector's contribution",
"learns interactions" between the modalities and "re-weights features at both modality and
cross-modal levels"; AUC 0.9992 on MC, better than the DNN or the CNN alone. Our reading:

1. extraction: CNN branch = the BGO direction CNN's convolutions (4x4 filters, :mod:`.bgo_cnn`)
   -> Dense(embed_dim); DNN branch = fixed variable transform -> Dense stack -> Dense(embed_dim);
2. gating (feature level, per branch): e <- e * sigmoid(Dense(embed_dim)(e));
3. hierarchical attention fusion (modality level): the tokens are the two gated embeddings plus,
   with `cross_modal`, a cross-modal token Dense(embed_dim)([e_img, e_var]); softmax weights over
   the tokens are computed from the concatenation of all tokens (layer "attention_weights", so a
   sub-model can report them), and the fused vector is their weighted sum;
4. head: Dense stack -> Dense(1) sigmoid.
`fusion="concat"` replaces step 3 by plain concatenation, and `gating=False` drops step 2 (the
ablations that show what the attention and gates add).

The same family gives seed 001's other networks: `modalities="image"` (the CNN alone, input
"x_image") and `modalities="variables"` (the DNN alone, input "x_vars"), the single-modality
classifiers HAMF is compared with; and `objective="regression"` (a linear output, MSE), the energy
network: ln(true energy / BGO deposit) from the image's shape, the deposit's scale from the
variables (the stored image is normalised to its hottest bar, so it carries no scale itself).

Variable transform (our choice, fixed and documented instead of adapted statistics, so a
model means the same thing on any data): per variable, by name prefix, y = (f(x) - loc) / scale
with f = log1p for the energy-like and heavy-tailed ones (total energy in MeV, RMS widths in
mm, zeta, number of fired bars), identity for the bounded ones (layer fractions, layer
indices, depth). It brings every input to O(1) for typical showers from 10 GeV to 1 PeV.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from dampeml.features.shower_variables import SHOWER_VARIABLE_NAMES
from dampeml.models.attention import AttentionKind, check_attention
from dampeml.models.bgo_cnn import BGO_IMAGE_SHAPE, conv_features
from dampeml.models.common import dense_stack, tf_keras
from dampeml.models.config import (
    ConfigError,
    ModelConfig,
    Task,
    check_fraction,
    check_indices,
    check_positive,
)

VariableTransform = tuple[str, Literal["log1p", "linear"], float, float]  # name prefix, f, loc, scale

#: (name prefix, f, loc, scale): y = (f(x) - loc) / scale; the first matching prefix applies.
DEFAULT_VARIABLE_TRANSFORM: tuple[VariableTransform, ...] = (
    ("total_mev", "log1p", 14.0, 4.0),  # ln(MeV): 9 (10 GeV) .. 21 (1 PeV)
    ("frac_", "linear", 1.0 / 14.0, 0.1),  # layer share of the deposit, mean 1/14
    ("rms_", "log1p", 3.0, 1.0),  # ln(1 + mm): ~3 for a 20 mm core, 0 for an empty layer
    ("max_layer", "linear", 7.0, 4.0),  # 0..13
    ("first_layer", "linear", 7.0, 4.0),  # 0..14
    ("zeta", "log1p", 2.0, 2.0),  # electrons below ~8.5, protons far above
    ("depth", "linear", 7.0, 4.0),  # energy-weighted mean layer
    ("n_bars", "log1p", 3.5, 1.5),  # 1..308 fired bars
)


@dataclass(frozen=True)
class HamfConfig(ModelConfig):
    family: ClassVar[str] = "hamf"

    image_shape: tuple[int, int] = BGO_IMAGE_SHAPE
    variable_names: tuple[str, ...] = SHOWER_VARIABLE_NAMES  # the columns of x_vars, in order
    variable_transform: tuple[VariableTransform, ...] = DEFAULT_VARIABLE_TRANSFORM
    # CNN branch (BGO image)
    cnn_filters: tuple[int, ...] = (32, 64, 64)
    cnn_kernel_size: tuple[int, int] = (4, 4)
    cnn_padding: Literal["same", "valid"] = "same"
    cnn_pool_after: tuple[int, ...] = (0,)
    cnn_pool_size: tuple[int, int] = (2, 2)
    #: Attention modules in the CNN branch (seed 002; :mod:`.attention`): where (0: the image, i:
    #: after convolution i; empty: none), which (spatial, channel or dual), the spatial kernel
    cnn_attention_at: tuple[int, ...] = ()
    cnn_attention: AttentionKind = "dual"
    cnn_attention_kernel: int = 7
    # DNN branch (shower variables)
    dnn_units: tuple[int, ...] = (128, 64)
    #: which branches: "both" (HAMF), "image" (the CNN alone), "variables" (the DNN alone)
    modalities: Literal["both", "image", "variables"] = "both"
    #: "classification" (P(electron), BCE) or "regression" (one linear output, MSE: the energy network)
    objective: Task = "classification"
    # gating and fusion
    embed_dim: int = 64
    gating: bool = True
    fusion: Literal["attention", "concat"] = "attention"
    cross_modal: bool = True
    # head
    head_units: tuple[int, ...] = (64,)
    dropout: float = 0.0
    activation: str = "relu"

    def validate(self) -> None:
        check_positive(
            self,
            image_shape=self.image_shape,
            cnn_filters=self.cnn_filters,
            cnn_kernel_size=self.cnn_kernel_size,
            cnn_pool_size=self.cnn_pool_size,
            dnn_units=self.dnn_units,
            embed_dim=self.embed_dim,
            head_units=self.head_units,
        )
        if not self.cnn_filters or not self.variable_names:
            raise ConfigError("HamfConfig: needs at least one CNN layer and one shower variable")
        check_indices(self, "cnn_pool_after", self.cnn_pool_after, len(self.cnn_filters))
        check_attention(
            self, self.cnn_attention_at, self.cnn_attention_kernel, len(self.cnn_filters), "cnn_attention"
        )
        check_fraction(self, dropout=self.dropout)
        if any(scale == 0 for _, _, _, scale in self.variable_transform):
            raise ConfigError("HamfConfig.variable_transform: scale must be non-zero")
        self.column_transform()  # every variable has a transform

    def column_transform(self) -> tuple[list[bool], list[float], list[float]]:
        """(log1p, loc, scale) per column of x_vars, from `variable_transform` by name prefix."""
        log1p, loc, scale = [], [], []
        for name in self.variable_names:
            match = next((t for t in self.variable_transform if name.startswith(t[0])), None)
            if match is None:
                raise ConfigError(
                    f"HamfConfig.variable_transform: no entry for variable {name!r} "
                    f"(prefixes: {[t[0] for t in self.variable_transform]})"
                )
            log1p.append(match[1] == "log1p")
            loc.append(match[2])
            scale.append(match[3])
        return log1p, loc, scale

    @property
    def n_variables(self) -> int:
        return len(self.variable_names)

    @property
    def task(self) -> Task:
        return self.objective

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model's inputs (the loader's batch keys), in order."""
        return {"both": ("x_image", "x_vars"), "image": ("x_image",), "variables": ("x_vars",)}[
            self.modalities
        ]


def transform_variables(v: Any, log1p: list[bool], loc: list[float], scale: list[float]) -> Any:
    """y_j = (f_j(x_j) - loc_j) / scale_j, f_j = log1p(max(x, 0)) or identity; non-finite inputs read 0.

    Written with TensorFlow ops on the Keras tensors, which tf-keras wraps as its built-in
    TFOpLambda layers: they save the op's name (e.g. "math.log1p") and constants, no Python
    code, so the model loads with `safe_mode=True` in any process, with no custom objects
    and nothing to import first (a custom layer would need its module imported before loading).
    Nothing here is trainable or adapted.
    """
    import tensorflow as tf

    clean = tf.where(tf.math.is_finite(v), v, tf.zeros_like(v))
    logged = tf.math.log1p(tf.maximum(clean, 0.0))
    mixed = tf.where(np.asarray(log1p, dtype=bool), logged, clean)
    return (mixed - np.asarray(loc, dtype=np.float32)) / np.asarray(scale, dtype=np.float32)


def build_hamf(config: HamfConfig, name: str = "hamf") -> Any:
    """The (uncompiled) HAMF network of `config` (or its one-branch variants, see the module docstring)."""
    keras = tf_keras()
    act, d = config.activation, config.embed_dim
    inputs, tokens = [], []

    # 1. extraction, and 2. gating: feature-level re-weighting inside each modality
    if config.modalities in ("both", "image"):
        image = keras.Input(shape=(*config.image_shape, 1), dtype="float32", name="x_image")
        h = conv_features(
            image,
            config.cnn_filters,
            config.cnn_kernel_size,
            config.cnn_padding,
            config.cnn_pool_after,
            config.cnn_pool_size,
            act,
            prefix="cnn",
            attention=(config.cnn_attention, config.cnn_attention_at, config.cnn_attention_kernel),
        )
        inputs.append(image)
        tokens.append(_gated(keras.layers.Dense(d, activation=act, name="cnn_embedding")(h), config, "cnn"))
    if config.modalities in ("both", "variables"):
        variables = keras.Input(shape=(config.n_variables,), dtype="float32", name="x_vars")
        v = transform_variables(variables, *config.column_transform())
        v = dense_stack(v, config.dnn_units, act, 0.0, prefix="dnn")
        inputs.append(variables)
        tokens.append(_gated(keras.layers.Dense(d, activation=act, name="dnn_embedding")(v), config, "dnn"))

    # 3. modality-level attention fusion: softmax weights over the tokens, from all of them
    if len(tokens) == 1:
        fused = tokens[0]
    else:
        if config.cross_modal:
            pair = keras.layers.Concatenate(name="modalities")(tokens)
            tokens.append(keras.layers.Dense(d, activation=act, name="cross_modal")(pair))
        joint = keras.layers.Concatenate(name="tokens_joint")(tokens)
        if config.fusion == "attention":
            weights = keras.layers.Dense(len(tokens), activation="softmax", name="attention_weights")(joint)
            stacked = keras.layers.Concatenate(axis=1, name="tokens")(
                [keras.layers.Reshape((1, d), name=f"token_{i}")(t) for i, t in enumerate(tokens)]
            )
            fused = keras.layers.Dot(axes=1, name="fused")([weights, stacked])  # sum_k w_k token_k
        else:
            fused = joint

    # 4. head
    h = dense_stack(fused, config.head_units, act, config.dropout, prefix="head")
    if config.objective == "classification":
        outputs = keras.layers.Dense(1, activation="sigmoid", name="p_electron")(h)
    else:
        outputs = keras.layers.Dense(1, activation="linear", name="regression")(h)
    return keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs, name=name)


def _gated(embedding: Any, config: HamfConfig, prefix: str) -> Any:
    """e * sigmoid(Dense(e)) with `config.gating`, else e unchanged."""
    if not config.gating:
        return embedding
    keras = tf_keras()
    gate = keras.layers.Dense(config.embed_dim, activation="sigmoid", name=f"{prefix}_gate")(embedding)
    return keras.layers.Multiply(name=f"{prefix}_gated")([embedding, gate])
