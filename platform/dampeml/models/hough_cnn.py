"""Hough CNN (paper section 5, Figure 9; section 6 for its classifier variant).

Input "x": the 400x400x4 uint8 Hough image (channels: x/y projection times charge below/above
Zthr; value = 42 x lines through the pixel, see :mod:`dampeml.features.hough`).

Heads (`head`):
- "regression": Dense(4) linear, the offsets of the true track in pixels (200 = the previous
  stage was right): the coarse (400 um) and precise (50 um) tracker networks; MSE.
- "classifier": Dense(1) sigmoid, P(no inelastic interaction): the Hough half of the inelastic
  classifier ("the network of Figure 9 with the last Dense 4 replaced by Dense 1"); BCE.

From the paper: ReLU everywhere but the output; 8-bit input; four charge/projection channels
(Zthr = sqrt 2, better than no split); 10% dropout for the inelastic networks; MSE/BCE; Adam 1e-4.
Our choices (Figure 9's layer list is not in the text):
- the uint8 input is rescaled inside the model by 1/42 (`input_scale`), so a pixel reads the
  number of Hough lines through it (0..6 for one track, the count that locates a track);
- six 3x3 'same' convolutions (16, 32, 32, 64, 64, 128 filters), each followed by 2x2 max
  pooling (400 -> 6 pixels), then Dense 256 -> 64 -> head; max pooling keeps the thin lines and
  their crossings (averaging would dilute them); `downsample="stride"` uses strided convs instead;
- the regression output's bias starts at the image centre (`output_bias`, default n/2 = 200), the
  target of a perfect upstream prediction, so training starts from "the prediction is right";
- `input_pool` (small preset) max-pools the image by a factor first, to make it cheap.
Channels: `input_channels` is the channel count of the input. A dataset built with `zthr: null`
still has 4 channels, the >= Zthr ones empty (so every model and dataset keeps its shape); use 4
for it. Use 2 only where the pipeline feeds the two < Zthr channels alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from dampeml.features.hough import COUNT_SCALE, N_CHANNELS
from dampeml.models.attention import AttentionKind, attend, check_attention
from dampeml.models.common import dense_stack, tf_keras
from dampeml.models.config import ConfigError, ModelConfig, Task, check_fraction, check_positive

HOUGH_IMAGE_SIZE = 400


@dataclass(frozen=True)
class HoughCnnConfig(ModelConfig):
    family: ClassVar[str] = "hough_cnn"

    image_size: int = HOUGH_IMAGE_SIZE
    input_channels: int = N_CHANNELS  # 4 with the charge split (2 projections x 2 classes)
    input_scale: float = 1.0 / COUNT_SCALE  # uint8 -> Hough lines through the pixel
    input_pool: int = 1  # max-pool the input by this factor first (1: off)
    conv_filters: tuple[int, ...] = (16, 32, 32, 64, 64, 128)
    kernel_size: tuple[int, int] = (3, 3)
    downsample: Literal["maxpool", "stride"] = "maxpool"  # after (or by) every convolution
    pool_size: int = 2
    dense_units: tuple[int, ...] = (256, 64)
    dropout: float = 0.0  # paper: 10% for the inelastic networks
    activation: str = "relu"
    head: Literal["regression", "classifier"] = "regression"
    n_outputs: int = 4  # regression head only; the classifier has one sigmoid output
    output_bias: float | None = None  # regression: None -> image centre (image_size / 2)
    #: Attention modules (seed 002; :mod:`.attention`): where (0: the input, i: after convolution i;
    #: empty: none), which (spatial, channel or dual) and the spatial kernel (k x k)
    attention_at: tuple[int, ...] = ()
    attention: AttentionKind = "dual"
    attention_kernel: int = 7

    def validate(self) -> None:
        check_positive(
            self,
            image_size=self.image_size,
            input_channels=self.input_channels,
            input_scale=self.input_scale,
            input_pool=self.input_pool,
            conv_filters=self.conv_filters,
            kernel_size=self.kernel_size,
            pool_size=self.pool_size,
            dense_units=self.dense_units,
            n_outputs=self.n_outputs,
        )
        check_fraction(self, dropout=self.dropout)
        check_attention(self, self.attention_at, self.attention_kernel, len(self.conv_filters))
        size = self.image_size // self.input_pool
        for _ in self.conv_filters:
            size = -(-size // self.pool_size)  # 'same' padding rounds up
        if size < 1:
            raise ConfigError(f"HoughCnnConfig: the image shrinks to nothing ({self.image_size} px)")

    @property
    def task(self) -> Task:
        return "regression" if self.head == "regression" else "classification"


def build_hough_cnn(config: HoughCnnConfig, name: str = "hough_cnn", input_name: str = "x") -> Any:
    """The (uncompiled) Hough CNN of `config`."""
    keras = tf_keras()
    n = config.image_size
    inputs = keras.Input(shape=(n, n, config.input_channels), dtype="uint8", name=input_name)
    h = keras.layers.Rescaling(config.input_scale, name="rescale")(inputs)
    if config.input_pool > 1:
        h = keras.layers.MaxPooling2D(config.input_pool, name="input_pool")(h)
    attention = (config.attention, config.attention_at, config.attention_kernel)
    h = attend(h, 0, *attention, prefix="conv")
    for i, filters in enumerate(config.conv_filters, start=1):
        strides = config.pool_size if config.downsample == "stride" else 1
        h = keras.layers.Conv2D(
            filters,
            config.kernel_size,
            strides=strides,
            padding="same",
            activation=config.activation,
            name=f"conv_{i}",
        )(h)
        h = attend(h, i, *attention, prefix="conv")
        if config.downsample == "maxpool" and config.pool_size > 1:
            h = keras.layers.MaxPooling2D(config.pool_size, padding="same", name=f"pool_{i}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = dense_stack(h, config.dense_units, config.activation, config.dropout, prefix="dense")
    if config.head == "regression":
        bias = n / 2.0 if config.output_bias is None else config.output_bias
        outputs = keras.layers.Dense(
            config.n_outputs,
            activation="linear",
            bias_initializer=keras.initializers.Constant(bias),
            name="offsets",
        )(h)
    else:
        outputs = keras.layers.Dense(1, activation="sigmoid", name="p_no_inelastic")(h)
    return keras.Model(inputs, outputs, name=name)


def pooled_input_twin(model: Any) -> tuple[Any, int]:
    """(`model` taking the input already max-pooled, pooling factor) for inference; (model, 1) if none.

    A model built with `input_pool` > 1 rescales its uint8 image and max-pools it first. The twin
    shares every weight and skips that pooling, so the caller can pool the 8-bit image itself
    (features.hough.max_pool), which is exact and far cheaper than pooling 640 kB of floats per
    image inside the network. Any other model comes back as it is.
    """
    keras = tf_keras()
    names = [layer.name for layer in model.layers]
    if names[1:3] != ["rescale", "input_pool"] or len(model.inputs) != 1:
        return model, 1
    pool = model.get_layer("input_pool")
    k = pool.pool_size[0]
    _, height, width, channels = model.inputs[0].shape
    if pool.pool_size != (k, k) or pool.strides != (k, k) or height % k or width % k:
        return model, 1
    inputs = keras.Input(
        (height // k, width // k, channels), dtype=model.inputs[0].dtype, name=model.input_names[0]
    )
    h = inputs
    for layer in model.layers[1:]:
        if layer is not pool:
            h = layer(h)
    return keras.Model(inputs, h, name=f"{model.name}_pooled_input"), k
