"""Raw STK inelastic classifier (paper section 6, Figure 12).

Input "x": the 24x3072x1 uint8 raw STK image (row = layer x 2 + readout half, column =
channel, value = 255 x signal / 16 MIP, see :mod:`dampeml.features.stk_image`). Output:
P(no inelastic interaction before the tracker), sigmoid; BCE.

The paper's layer list (Figure 12), every number a config field:
- image "reduction": Conv2D 1x4, strides 1x2, five times, filters alternating 32/16
  (32, 16, 32, 16, 32): width 3072 -> 1535 -> 766 -> 382 -> 190 -> 94;
- Conv2D 8x4, strides 1x1, three times, filters 16, 32, 16: 24x94 -> 17x91 -> 10x88 -> 3x85;
- Conv2D 3x85 ("full image") x 20 filters: 3x85 -> 1x1x20;
- Dense 100, Dense 50, Dense 1 sigmoid; ReLU elsewhere; 10% dropout.
Reading the figure: its text gives four 1x4 layers with 32, 32, 32, 16 filters and one with
16, and 8x4 layers with 16, 32, 16; "alternating" then fixes the 1x4 order as 32, 16, 32, 16, 32,
which makes all eight layers alternate. 'valid' padding is what makes the numbers meet
exactly at 3x85, the full-image kernel. `final_kernel=None` (default) takes whatever map is
left, so the small preset and ablations keep the "full image" meaning.
Our choices: dropout after each hidden Dense layer (the paper gives the rate, not the place);
the uint8 input is rescaled inside the model to MIP (x 16/255: a proton reads ~1, helium ~4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from dampeml.features.stk_image import SIGNAL_FULL_SCALE, STK_IMAGE_SHAPE
from dampeml.models.common import dense_stack, tf_keras
from dampeml.models.config import ConfigError, ModelConfig, Task, check_fraction, check_positive


@dataclass(frozen=True)
class RawStkCnnConfig(ModelConfig):
    family: ClassVar[str] = "raw_stk_cnn"

    image_shape: tuple[int, int] = tuple(STK_IMAGE_SHAPE)
    input_scale: float = SIGNAL_FULL_SCALE / 255.0  # uint8 -> MIP
    reduction_filters: tuple[int, ...] = (32, 16, 32, 16, 32)
    reduction_kernel: tuple[int, int] = (1, 4)
    reduction_strides: tuple[int, int] = (1, 2)
    conv_filters: tuple[int, ...] = (16, 32, 16)
    conv_kernel: tuple[int, int] = (8, 4)
    final_filters: int = 20
    final_kernel: tuple[int, int] | None = None  # None: the whole remaining map (3x85 here)
    dense_units: tuple[int, ...] = (100, 50)
    dropout: float = 0.1  # paper: 5% ~ 10% > 20%
    activation: str = "relu"

    def validate(self) -> None:
        check_positive(
            self,
            image_shape=self.image_shape,
            input_scale=self.input_scale,
            reduction_filters=self.reduction_filters,
            reduction_kernel=self.reduction_kernel,
            reduction_strides=self.reduction_strides,
            conv_filters=self.conv_filters,
            conv_kernel=self.conv_kernel,
            final_filters=self.final_filters,
            dense_units=self.dense_units,
        )
        if self.final_kernel is not None:
            check_positive(self, final_kernel=self.final_kernel)
        check_fraction(self, dropout=self.dropout)
        h, w = self.map_before_final()
        if h < 1 or w < 1:
            raise ConfigError(
                f"RawStkCnnConfig: the image {self.image_shape} shrinks to {h}x{w} "
                "before the final convolution"
            )
        if self.final_kernel is not None and (self.final_kernel[0] > h or self.final_kernel[1] > w):
            raise ConfigError(
                f"RawStkCnnConfig.final_kernel {list(self.final_kernel)} exceeds the {h}x{w} map"
            )

    def map_before_final(self) -> tuple[int, int]:
        """Height and width of the feature map that the final convolution sees ('valid' padding)."""
        h, w = self.image_shape
        (kh, kw), (sh, sw) = self.reduction_kernel, self.reduction_strides
        for _ in self.reduction_filters:
            h, w = (h - kh) // sh + 1, (w - kw) // sw + 1
        for _ in self.conv_filters:
            h, w = h - self.conv_kernel[0] + 1, w - self.conv_kernel[1] + 1
        return h, w

    @property
    def task(self) -> Task:
        return "classification"


def build_raw_stk_cnn(config: RawStkCnnConfig, name: str = "raw_stk_cnn", input_name: str = "x") -> Any:
    """The (uncompiled) raw STK inelastic classifier of `config`."""
    keras = tf_keras()
    act = config.activation
    inputs = keras.Input(shape=(*config.image_shape, 1), dtype="uint8", name=input_name)
    h = keras.layers.Rescaling(config.input_scale, name="rescale")(inputs)
    for i, filters in enumerate(config.reduction_filters, start=1):
        h = keras.layers.Conv2D(
            filters,
            config.reduction_kernel,
            strides=config.reduction_strides,
            activation=act,
            name=f"reduce_{i}",
        )(h)
    for i, filters in enumerate(config.conv_filters, start=1):
        h = keras.layers.Conv2D(filters, config.conv_kernel, activation=act, name=f"conv_{i}")(h)
    final_kernel = config.final_kernel or config.map_before_final()
    h = keras.layers.Conv2D(config.final_filters, final_kernel, activation=act, name="conv_full")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = dense_stack(h, config.dense_units, act, config.dropout, prefix="dense")
    outputs = keras.layers.Dense(1, activation="sigmoid", name="p_no_inelastic")(h)
    return keras.Model(inputs, outputs, name=name)
