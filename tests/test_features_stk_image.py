"""Raw STK image: clusters land at (layer * 2 + half, channel), signals map to 8 bits, awkward = flat."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from dampeml.features.stk_image import SIGNAL_FULL_SCALE, STK_IMAGE_SHAPE, render_stk_image
from dampeml.io.root_reader import read_events


def test_known_clusters_land_at_the_right_pixel():
    # event 0: one cluster; event 1: none; event 2: two clusters sharing a pixel, one saturating, one faint
    counts = np.array([1, 0, 4])
    layer = np.array([5, 11, 11, 0, 0])
    half = np.array([1, 0, 0, 1, 1])
    channel = np.array([1234, 3071, 3071, 0, 7])
    signal = np.array([1.0, 2.0, 2.0, 100.0, 0.001])
    img = render_stk_image(layer, half, channel, signal, counts)
    assert img.shape == (3,) + STK_IMAGE_SHAPE and img.dtype == np.uint8
    assert img[0, 11, 1234] == round(255 / SIGNAL_FULL_SCALE) == 16
    assert np.count_nonzero(img[0]) == 1 and np.count_nonzero(img[1]) == 0
    assert img[2, 22, 3071] == 64  # 2 + 2 MIP summed
    assert img[2, 1, 0] == 255  # clipped
    assert img[2, 1, 7] == 1  # a cluster never reads 0
    assert np.count_nonzero(img[2]) == 3


def test_awkward_input_equals_flat_input(sample_files):
    ev = read_events(sample_files["helium"], entry_stop=50)
    names = ["stk_layer", "stk_half", "stk_channel", "stk_signal"]
    img = render_stk_image(*(ev[k] for k in names))
    counts = ak.to_numpy(ak.num(ev["stk_layer"]))
    flat = [ak.to_numpy(ak.flatten(ev[k])) for k in names]
    assert np.array_equal(img, render_stk_image(*flat, counts=counts))
    assert np.array_equal(img, render_stk_image(*(ak.to_arrow(ev[k]) for k in names)))  # Ray Data batches
    pixels = {
        (e, r, c)
        for e, r, c in zip(np.repeat(np.arange(50), counts), flat[0] * 2 + flat[1], flat[2], strict=True)
    }
    assert np.count_nonzero(img) == len(pixels)


def test_out_of_range_and_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="outside"):
        render_stk_image([12], [0], [5], [1.0], counts=[1])
    with pytest.raises(ValueError, match="counts"):
        render_stk_image([1, 2], [0, 0], [5, 6], [1.0, 1.0], counts=[1])
