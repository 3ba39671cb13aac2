"""The 24x3072 raw STK image of the inelastic classifier, rendered from the sparse clusters.

Row = layer * 2 + readout half (so rows 4k..4k+1 are an x layer and 4k+2..4k+3 the y
layer of plane k, the two projections interleaved as in the BGO image), column = readout
channel, pixel = cluster signal. A dense image is 73.7 kB per event while an event has
tens of clusters, so datasets store the clusters (the `stk_*` branches: layer, half,
channel, signal) and the input pipeline renders a batch with :func:`render_stk_image`.

8-bit mapping: value = rint(255 * signal / SIGNAL_FULL_SCALE), clipped to [1, 255].
A full scale of 16 MIP gives 1/16 MIP per level: a proton (~1 MIP) reads ~16, helium
(~4 MIP) ~64, the slow fragments and backsplash stoppers the classifier looks for
(3-10 MIP) stay below saturation, and only heavy clusters clip. A pixel that holds a
cluster never reads 0 (the floor of 1), so faint noise clusters stay visible. Two
clusters in one pixel add their signals before the mapping.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dampeml import geometry as geo
from dampeml.features.jagged import event_index, flatten

STK_IMAGE_SHAPE = (geo.STK_N_LAYERS * geo.STK_N_HALVES, geo.STK_CHANNELS_PER_HALF)
SIGNAL_FULL_SCALE = 16.0  # MIP at pixel value 255


def stk_pixel_value(signal: np.ndarray) -> np.ndarray:
    """Summed cluster signal (MIP) -> uint8 pixel value (see the module docstring)."""
    v = np.rint(np.asarray(signal, dtype=np.float64) * (255.0 / SIGNAL_FULL_SCALE))
    return np.clip(v, 1, 255).astype(np.uint8)


def render_stk_image(
    layer: Sequence, half: Sequence, channel: Sequence, signal: Sequence, counts: np.ndarray | None = None
) -> np.ndarray:
    """Clusters of B events -> (B, 24, 3072) uint8 raw STK images.

    Takes the jagged `stk_*` awkward arrays as read, or flat arrays with `counts` (clusters
    per event). Clusters outside the image (bad layer/half/channel) raise ValueError:
    they would otherwise land in another event's pixels.
    """
    counts, (layer, half, channel, signal) = flatten([layer, half, channel, signal], counts)
    n_rows, n_cols = STK_IMAGE_SHAPE
    layer, half, channel = (np.asarray(a, dtype=np.int64) for a in (layer, half, channel))
    bad = (
        (layer < 0)
        | (layer >= geo.STK_N_LAYERS)
        | (half < 0)
        | (half >= geo.STK_N_HALVES)
        | (channel < 0)
        | (channel >= n_cols)
    )
    if bad.any():
        raise ValueError(f"{int(bad.sum())} clusters outside the STK readout (layer/half/channel)")
    out = np.zeros((len(counts), n_rows, n_cols), dtype=np.uint8)
    flat = (event_index(counts) * n_rows + layer * geo.STK_N_HALVES + half) * n_cols + channel
    pixels, inverse = np.unique(flat, return_inverse=True)
    summed = np.bincount(inverse, weights=np.asarray(signal, dtype=np.float64), minlength=len(pixels))
    out.reshape(-1)[pixels] = stk_pixel_value(summed)
    return out
