"""Hough images: the compiled renderer equals the definition, lines meet at the true track, RoI, targets."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from dampeml import geometry as geo
from dampeml.features.hough import (
    COARSE,
    COUNT_SCALE,
    PRECISE,
    ZTHR,
    HoughGeometry,
    RoiHits,
    apply_offsets,
    hough_targets,
    max_pool,
    render_hough,
    render_hough_reference,
    select_roi_hits,
)
from dampeml.features.tracks import cos_theta, position_at_layer, truth_track
from dampeml.io.root_reader import read_events

SMALL = HoughGeometry(0.1, 37)  # odd size: the centre is a pixel centre, not a corner


@pytest.fixture(scope="module")
def protons(sample_files):
    return read_events(sample_files["proton"])


def random_hits(rng: np.random.Generator, geometry: HoughGeometry, n_events: int, max_hits: int) -> RoiHits:
    """Random RoI hits, some just outside the window, some repeated (to saturate pixels)."""
    counts = rng.integers(0, max_hits, n_events)
    counts[0] = 0
    n = int(counts.sum())
    layer = rng.integers(0, geo.STK_N_LAYERS, n)
    offset = rng.uniform(-1.05, 1.05, n) * geometry.half_window_mm
    signal = rng.exponential(1.5, n)
    dup = rng.random(n) < 0.3  # copy the previous hit (same event unless at a boundary)
    dup[0] = False
    for arr in (layer, offset, signal):
        idx = np.arange(n)
        idx[dup] = 0
        arr[:] = arr[np.maximum.accumulate(idx)]
    return RoiHits(counts, layer.astype(np.int8), offset.astype(np.float32), signal.astype(np.float32))


# The STK as built (paper, section 2), written out here rather than taken from the code under test:
# six planes (mm), each an x layer 1.75 mm above a y layer 1.75 mm below its centre; the image's
# planes are the first and the last.
PLANE_Z = [-210.0, -176.0, -143.0, -110.0, -76.5, -42.0]


def reference_image(
    hits: RoiHits, cos_t: np.ndarray, geometry: HoughGeometry, zthr: float | None
) -> np.ndarray:
    """The module doc's definition, written independently of the renderer (its own hit lines too):
    hit u in layer z at f = (z - z_top) / (z_bot - z_top) is the line
    (1 - f) delta_top + f delta_bot = c, c = u / pixel + n/2; pixel (i, j) is lit where, at the pixel
    centre of the axis the line is shallow in, the line is inside the pixel on the other axis."""
    n = geometry.n_pixels
    z = np.array([p + d for p in PLANE_Z for d in (-1.75, 1.75)])
    lines = np.zeros((hits.n_events, n, n, 4), np.int64)
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    first = np.concatenate([[0], np.cumsum(hits.counts)])
    for e in range(hits.n_events):
        for h in range(first[e], first[e + 1]):
            layer = int(hits.layer[h])
            f = (z[layer] - PLANE_Z[0]) / (PLANE_Z[-1] - PLANE_Z[0])
            c = np.float64(hits.offset[h]) / geometry.pixel_mm + n / 2.0
            channel = 2 * (layer % 2)  # even layers measure x
            if zthr is not None:
                channel += bool(np.sqrt(max(np.float64(hits.signal[h]) * cos_t[e], 0.0)) >= zthr)
            if f > 0.5:  # shallow in delta_top: one pixel per i
                delta_bot = (c - (1.0 - f) * (ii + 0.5)) / f
                lines[e, :, :, channel] += (jj <= delta_bot) & (delta_bot < jj + 1)
            else:
                delta_top = (c - f * (jj + 0.5)) / (1.0 - f)
                lines[e, :, :, channel] += (ii <= delta_top) & (delta_top < ii + 1)
    return np.minimum(42 * lines, 255).astype(np.uint8)


def test_single_hits_draw_the_lines_worked_out_by_hand():
    """Hand-worked lines in the 37 x 0.1 mm image (centre 18.5): a hit of the bottom layer (11, a y
    layer, f = 169.75 / 168) fixes delta_bot: +1.0 mm -> c = 28.5, and over the 37 rows
    delta_bot = (28.5 + 0.0104 (i + 1/2)) / 1.0104 runs from 28.21 to 28.58: column 28 of channel 2.
    A hit of the top layer (0, x, f = -1.75 / 168) at -0.5 mm fixes delta_top: row 13 of channel 0.
    Signal 1 MIP at cos = 1: charge 1 < Zthr, the low-charge channels; 4 MIP: the high ones."""
    cases = [(11, 1.0, 1.0, (slice(None), 28, 2)), (0, -0.5, 1.0, (13, slice(None), 0)),
             (11, 1.0, 4.0, (slice(None), 28, 3))]  # fmt: skip
    for layer, offset, signal, where in cases:
        hits = RoiHits(np.array([1]), np.array([layer], np.int8), np.array([offset], np.float32),
                       np.array([signal], np.float32))  # fmt: skip
        expected = np.zeros((1, 37, 37, 4), np.uint8)
        expected[(0, *where)] = 42
        np.testing.assert_array_equal(render_hough(hits, np.ones(1), SMALL), expected)
        np.testing.assert_array_equal(reference_image(hits, np.ones(1), SMALL, ZTHR), expected)
    # a straight track through the prediction: all 12 lines meet in the centre pixel (18, 18), at
    # 6 lines per projection (252 in the x and the y channel)
    track = RoiHits(
        np.array([12]), np.arange(12, dtype=np.int8), np.zeros(12, np.float32), np.ones(12, np.float32)
    )
    img = render_hough(track, np.ones(1), SMALL)
    assert img[0, 18, 18, 0] == img[0, 18, 18, 2] == 252 and img[0, :, :, 0].max() == 252
    assert np.count_nonzero(img[0, :, :, 0] == 252) == 1 and np.count_nonzero(img[0, :, :, 2] == 252) == 1


@pytest.mark.parametrize("geometry", [PRECISE, COARSE, SMALL, HoughGeometry(0.25, 64)])
@pytest.mark.parametrize("zthr", [ZTHR, None])
def test_renderer_equals_reference(geometry, zthr):
    rng = np.random.default_rng(int(geometry.pixel_mm * 1000) + geometry.n_pixels)
    max_hits = 12 if geometry.n_pixels >= 400 else 60
    hits = random_hits(rng, geometry, 5, max_hits)
    cos_t = rng.uniform(0.4, 1.0, hits.n_events)
    fast = render_hough(hits, cos_t, geometry, zthr)
    ref = reference_image(hits, cos_t, geometry, zthr)  # the test's own lines, not hit_lines()
    np.testing.assert_array_equal(render_hough_reference(hits, cos_t, geometry, zthr), ref)
    assert fast.shape == (5, geometry.n_pixels, geometry.n_pixels, 4) and fast.dtype == np.uint8
    assert np.count_nonzero(ref) > 0
    assert np.array_equal(fast, ref), f"{np.count_nonzero(fast != ref)} pixels differ"
    if zthr is None:
        assert not fast[..., 1].any() and not fast[..., 3].any()


def test_levels_saturate_and_never_wrap():
    # k copies of one hit light the same pixels k times: 42 k up to 6 lines, then 255, also past
    # the 255 lines a uint8 counter would wrap at
    for k, level in ((1, 42), (6, 252), (7, 255), (256, 255), (300, 255)):
        hits = RoiHits(np.array([k]), np.full(k, 4, np.int8), np.zeros(k, np.float32), np.ones(k, np.float32))
        img = render_hough(hits, np.ones(1), SMALL)
        assert set(np.unique(img[0, :, :, 0])) == {0, level}, k
        assert np.count_nonzero(img) == SMALL.n_pixels


def test_lines_are_connected_and_one_pixel_per_step():
    rng = np.random.default_rng(3)
    n = 200
    hits = RoiHits(
        np.ones(n, np.int64),
        rng.integers(0, 12, n).astype(np.int8),
        rng.uniform(-1, 1, n).astype(np.float32) * SMALL.half_window_mm,
        np.ones(n, np.float32),
    )
    img = render_hough(hits, np.ones(n), SMALL)
    f = (geo.STK_LAYER_Z[hits.layer] - geo.Z_TOP) / (geo.Z_BOT - geo.Z_TOP)
    for h in range(n):
        ch = 0 if hits.layer[h] % 2 == 0 else 2
        i, j = np.nonzero(img[h, :, :, ch])
        step, other = (i, j) if f[h] > 0.5 else (j, i)
        order = np.argsort(step)
        step, other = step[order], other[order]
        assert len(np.unique(step)) == len(step)  # one pixel per step
        if len(step) > 1:
            assert np.all(np.diff(step) == 1) and np.all(np.abs(np.diff(other)) <= 1)


def test_charge_split_channels():
    # x-layer hits (layer 4) and y-layer hits (layer 7); q = sqrt(signal * cos) vs Zthr = sqrt(2)
    cos_t = np.array([0.5])
    signal = np.array([1.0, 3.99, 4.0, 9.0], np.float32)  # q = 0.71, 1.412, 1.414.., 2.12
    for layer, base in ((4, 0), (7, 2)):
        hits = RoiHits(np.array([4]), np.full(4, layer, np.int8), np.zeros(4, np.float32), signal)
        img = render_hough(hits, cos_t, SMALL)
        lines = img.astype(int).sum(axis=(0, 1, 2)) // COUNT_SCALE
        assert lines[base] == 2 * img.shape[1] and lines[base + 1] == 2 * img.shape[1]
        assert lines[2 - base] == 0 and lines[3 - base] == 0
        nosplit = render_hough(hits, cos_t, SMALL, zthr=None)
        assert not nosplit[..., base + 1].any() and nosplit[..., base].max() == 4 * COUNT_SCALE


def exact_track_hits(track: np.ndarray) -> dict:
    """One noiseless 1-MIP hit per layer of each track, as jagged awkward branches."""
    n = len(track)
    ev = np.repeat(np.arange(n), geo.STK_N_LAYERS)
    layer = np.tile(np.arange(geo.STK_N_LAYERS), n)
    pos = position_at_layer(track, ev, layer)
    counts = np.full(n, geo.STK_N_LAYERS)
    return {
        k: ak.unflatten(v, counts) for k, v in (("layer", layer), ("pos", pos), ("signal", np.ones(len(ev))))
    }


@pytest.mark.parametrize("geometry", [PRECISE, COARSE])
def test_shifting_the_prediction_moves_the_intersection(geometry):
    rng = np.random.default_rng(5)
    n = 6
    truth = np.column_stack([rng.uniform(-200, 200, (n, 2)), rng.uniform(-200, 200, (n, 2))])
    k = rng.integers(-150, 150, (n, 4))
    k[0] = 0
    shift = (k + 0.5) * geometry.pixel_mm  # the track lands on a pixel centre: no rounding ambiguity
    prediction = truth + shift
    h = exact_track_hits(truth)
    hits = select_roi_hits(h["layer"], h["pos"], h["signal"], prediction, geometry)
    assert np.all(hits.counts == geo.STK_N_LAYERS)
    img = render_hough(hits, cos_theta(prediction), geometry)
    target = hough_targets(truth, prediction, geometry)
    assert np.allclose(target, geometry.centre - k - 0.5)  # +d mm -> -d/pixel
    for e in range(n):
        for proj, ch in ((0, 0), (1, 2)):
            i, j = np.floor(target[e, [proj, proj + 2]]).astype(int)
            assert img[e, i, j, ch] == 6 * COUNT_SCALE  # all 6 lines of the projection meet there
            assert img[e, :, :, ch].max() == 6 * COUNT_SCALE
            assert np.count_nonzero(img[e, :, :, ch] == 6 * COUNT_SCALE) == 1


def brightest(img: np.ndarray) -> np.ndarray:
    """(B, 2) centre of the pixels crossed by the most lines, image coordinates."""
    flat = img.reshape(len(img), -1)
    top = flat == flat.max(axis=1, keepdims=True)
    i, j = np.divmod(np.arange(flat.shape[1]), img.shape[2])
    return np.column_stack([top @ i, top @ j]) / top.sum(axis=1, keepdims=True) + 0.5


def test_true_track_lines_meet_at_the_centre_and_follow_a_shift(protons):
    """On protons that reach the BGO intact (after an interaction in the tracker, which the trigger favours:
    ~40% of the recorded 0.1-100 TeV protons, the primary leaves too few hits to draw its lines)."""
    n = 250  # MC events: 160 MB of images per rendering
    clean = np.flatnonzero(~np.asarray(protons["true_inelastic"]))[:n]
    assert len(clean) == n
    truth = truth_track(protons)[clean]
    args = [protons[k][clean] for k in ("stk_layer", "stk_pos", "stk_signal", "stk_is_primary")]
    shift = np.array([0.5, -0.3, 0.2, 0.7])  # mm
    results = []
    for prediction in (truth, truth + shift):
        hits = select_roi_hits(*args[:3], prediction, PRECISE, keep=args[3])
        img = render_hough(hits, cos_theta(prediction), PRECISE)
        ev = hits.event_index()
        for proj in (0, 1):
            n_hits = np.bincount(ev[hits.layer % 2 == proj], minlength=n)
            lines = img[..., 2 * proj].astype(np.int16) + img[..., 2 * proj + 1]  # both charge classes
            results.append((brightest(lines), n_hits >= 5))
    for proj in (0, 1):
        centre, good = results[proj]
        print(f"\nprojection {proj}: {good.mean():.1%} of the events with >= 5 primary hits (limit 80%)")
        assert good.mean() > 0.8
        dist = np.abs(centre[good] - PRECISE.centre).max(axis=1)
        assert np.mean(dist <= 2.0) > 0.75, f"projection {proj}: {np.mean(dist <= 2.0):.2f} within 2 px"
        moved, _ = results[2 + proj]
        expected = -shift[[proj, proj + 2]] / PRECISE.pixel_mm
        assert np.allclose(np.median(moved[good] - centre[good], axis=0), expected, atol=1.0)


def test_roi_rule_and_nan_prediction():
    hw = COARSE.half_window_mm
    offsets = np.array([0.0, hw, -hw, hw * 1.0001, -hw * 1.0001, 3.0])
    n = len(offsets)
    prediction = np.array([[10.0, -20.0, 30.0, 5.0], [np.nan] * 4])
    layer = np.array([2] * n + [3])
    ev = np.array([0] * n + [1])
    pos = position_at_layer(prediction, ev, layer) + np.append(offsets, 0.0)
    hits = select_roi_hits(layer, pos, np.ones(n + 1), prediction, COARSE, counts=np.array([n, 1]))
    assert hits.counts.tolist() == [4, 0]
    assert np.allclose(hits.offset, [0.0, hw, -hw, 3.0], atol=1e-4)


def test_every_roi_hit_inside_the_window_draws_pixels():
    rng = np.random.default_rng(9)
    n = 300
    track = rng.uniform(-100, 100, (1, 4))
    layer = rng.integers(0, 12, n)
    offset = rng.uniform(-1, 1, n) * (SMALL.half_window_mm - SMALL.pixel_mm)
    pos = position_at_layer(track, np.zeros(n, int), layer) + offset
    sel = select_roi_hits(layer, pos, np.ones(n), track, SMALL, counts=np.array([n]))
    one_per_event = RoiHits(np.ones(n, np.int64), sel.layer, sel.offset, sel.signal)
    img = render_hough(one_per_event, np.ones(n), SMALL)
    assert np.all(img.reshape(n, -1).max(axis=1) == COUNT_SCALE)


def test_targets_round_trip():
    rng = np.random.default_rng(2)
    truth = rng.uniform(-300, 300, (50, 4))
    prediction = truth + rng.normal(0, 5, (50, 4))
    for geometry in (PRECISE, COARSE, SMALL):
        t = hough_targets(truth, prediction, geometry)
        assert np.allclose(apply_offsets(prediction, t, geometry), truth, atol=1e-9)
        assert np.allclose(hough_targets(prediction, prediction, geometry), geometry.centre)


def test_compact_hits_are_small_and_batch_like_the_whole(protons):
    truth = truth_track(protons)
    hits = select_roi_hits(protons["stk_layer"], protons["stk_pos"], protons["stk_signal"], truth, COARSE)
    assert hits.nbytes / hits.n_events < 2048
    assert hits.nbytes == 9 * len(hits.layer) + 4 * hits.n_events
    back = RoiHits.from_arrays(
        *(ak.unflatten(a, hits.counts) for a in (hits.layer, hits.offset, hits.signal))
    )
    assert np.array_equal(back.counts, hits.counts) and np.array_equal(back.offset, hits.offset)
    cos_t = cos_theta(truth)
    whole = render_hough(hits.events(0, 40), cos_t[:40], COARSE)
    part = render_hough(hits.events(20, 40), cos_t[20:40], COARSE)
    assert np.array_equal(whole[20:], part)
    with pytest.raises(ValueError, match="RoiHits"):
        RoiHits(np.array([2]), hits.layer[:1], hits.offset[:1], hits.signal[:1])


def test_take_reorders_and_selects_whole_events():
    """RoiHits.take: events in the given order, each with exactly its own hits (empty ones too)."""
    counts = np.array([2, 0, 3, 1])
    offset = np.arange(6, dtype=np.float32)  # event 0: 0, 1; event 2: 2, 3, 4; event 3: 5
    hits = RoiHits(counts, np.zeros(6, np.int8), offset, offset + 10)
    taken = hits.take(np.array([3, 1, 0, 2, 0]))
    assert taken.counts.tolist() == [1, 0, 2, 3, 2]
    assert taken.offset.tolist() == [5, 0, 1, 2, 3, 4, 0, 1]
    assert np.array_equal(taken.signal, taken.offset + 10)
    assert hits.take(np.array([1], dtype=np.int64)).layer.shape == (0,)


def test_max_pool_is_the_block_maximum():
    """The chain pools the 8-bit images itself (Runner, input_pool): each output pixel is its block's
    maximum, per channel; sizes that do not divide are refused."""
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (3, 12, 12, 4), dtype=np.uint8)
    images[1] = 0  # an empty image stays empty
    for k in (1, 2, 4):
        expected = images.reshape(3, 12 // k, k, 12 // k, k, 4).max(axis=(2, 4))
        np.testing.assert_array_equal(max_pool(images, k), expected)
    assert max_pool(images, 4)[0, 0, 0, 2] == images[0, :4, :4, 2].max()
    with pytest.raises(ValueError, match="multiple"):
        max_pool(images, 5)
