"""BGO image: bar over hottest bar in 8 bits, the hottest bar at 255, empty events at zero."""

from __future__ import annotations

import numpy as np
import pytest

from dampeml.features.bgo_image import bgo_image, to_float
from dampeml.io.root_reader import read_events


@pytest.fixture(scope="module")
def bgo(sample_files):
    return read_events(sample_files["proton"], branches=["bgo_energy"])["bgo_energy"]


def test_shape_dtype_and_hottest_bar_is_255(bgo):
    img = bgo_image(bgo)
    assert img.shape == bgo.shape and img.dtype == np.uint8
    n = len(bgo)
    flat_e, flat_img = bgo.reshape(n, -1), img.reshape(n, -1)
    hottest = flat_e.argmax(axis=1)
    assert np.all(flat_img[np.arange(n), hottest] == 255)
    # 255 only where a bar is within half a level of the hottest (e.g. several saturated bars)
    e_max = np.broadcast_to(flat_e.max(axis=1, keepdims=True), flat_e.shape)
    hot = flat_img == 255
    assert np.all(flat_e[hot] >= 254.5 / 255 * (1 - 1e-6) * e_max[hot])


def test_quantization_error_is_below_half_a_level(bgo):
    ratio = bgo / bgo.max(axis=(1, 2), keepdims=True)
    f = to_float(bgo_image(bgo))
    assert f.dtype == np.float32 and f.min() >= 0 and f.max() == 1.0
    assert np.abs(f - ratio).max() <= 0.5 / 255 + 1e-6
    assert np.all((bgo > 0) | (f == 0))  # zeros stay zero


def test_empty_and_bad_events_give_zeros_not_nan():
    e = np.zeros((3, 14, 22), np.float32)
    e[1, 3, 5] = 7.0
    e[2, 0, 0] = np.nan
    e[2, 1, 1] = -5.0
    img = bgo_image(e)
    assert img[0].sum() == 0 and img[2].sum() == 0
    assert img[1, 3, 5] == 255 and img[1].sum() == 255
    assert not np.isnan(to_float(img)).any()


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="bgo_energy"):
        bgo_image(np.ones((2, 22, 14)))
