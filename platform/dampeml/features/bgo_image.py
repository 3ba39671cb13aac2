"""The 14x22 BGO image of the calorimeter networks: each bar over the event's hottest bar, 8 bits.

Row = layer from the top (even rows measure x: the xz view, odd rows y: the yz view),
column = bar, as the event branch `bgo_energy` and the paper's figure 4. Dividing by the
hottest bar makes the image independent of the energy scale (the energy-range models
and the deposit itself carry the scale), and puts every pixel in [0, 1]; 8 bits are
what the paper found sufficient (16 bits gave no gain) and make a stored image 308 bytes.
"""

from __future__ import annotations

import numpy as np

from dampeml import geometry as geo

BGO_IMAGE_SHAPE = (geo.BGO_N_LAYERS, geo.BGO_N_BARS)
BGO_IMAGE_LEVELS = 255


def bgo_image(bgo_energy: np.ndarray) -> np.ndarray:
    """(N, 14, 22) bar energies -> (N, 14, 22) uint8, rint(255 * E / E_max).

    Rounding to nearest keeps the error under half a level (1/510 of the hottest bar), so
    the hottest bar (and only bars within 0.2% of it, e.g. several saturated bars) reads
    255. Events with no energy, negative or non-finite values (quarantined upstream
    anyway) give zeros, never NaN.
    """
    e = np.asarray(bgo_energy, dtype=np.float32)
    if e.shape[1:] != BGO_IMAGE_SHAPE:
        raise ValueError(f"bgo_energy must be (N, {BGO_IMAGE_SHAPE[0]}, {BGO_IMAGE_SHAPE[1]}), got {e.shape}")
    e = np.where(np.isfinite(e) & (e > 0), e, np.float32(0))
    e_max = e.max(axis=(1, 2), keepdims=True)
    scale = np.divide(np.float32(BGO_IMAGE_LEVELS), e_max, out=np.zeros_like(e_max), where=e_max > 0)
    return np.rint(e * scale).astype(np.uint8)


def to_float(img_u8: np.ndarray) -> np.ndarray:
    """8-bit image -> float32 in [0, 1], the network input."""
    return np.asarray(img_u8, dtype=np.float32) * np.float32(1.0 / BGO_IMAGE_LEVELS)
