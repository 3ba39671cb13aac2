"""Hough images of the STK RoI around a predicted track, their compact storage form, and the targets.

Per projection, a straight track is the point (u_top, u_bot) of its coordinates at the
first and last STK plane. The image axes are the offsets from the previous stage's
prediction (p_top, p_bot), in pixels, centred (paper, section 5):

    delta_top = (u_top - p_top) / pixel + n/2,    delta_bot = (u_bot - p_bot) / pixel + n/2.

A hit measuring u in a layer at fraction f between the planes (tracks.LAYER_FRACTION) is
crossed by every track on the line (1 - f) u_top + f u_bot = u, i.e. in the image

    (1 - f) delta_top + f delta_bot = c,    c = (u - p(z)) / pixel + n/2,

with p(z) the prediction at the layer. Lines of hits of one track meet at that track's
point; a perfect prediction puts it at the image centre (n/2, n/2).

Conventions (all documented choices):
- Continuous image coordinates: pixel i covers delta in [i, i + 1), so the image covers
  the offsets [-n/2, n/2] pixels symmetrically and the centre (200, 200) is the corner
  shared by pixels 199 and 200 of each axis. Arrays are image[event, i_top, i_bot, channel].
- RoI: a hit is kept iff |u - p(z)| <= n/2 pixels, which for 0 <= f <= 1 is exactly when
  its line meets the image square (the two outer layers have f = -0.01 and 1.01, where
  the line may also graze the image from 1% outside; we keep the simple rule).
- Channels: 2 * projection + charge class = (x, q < Zthr), (x, q >= Zthr), (y, < Zthr),
  (y, >= Zthr), with the hit charge q = sqrt(signal * cos(theta_pred)) (the path-length
  corrected signal; signal ~ Z^2). `zthr=None` (no split, the paper's ablation) puts every
  hit in the < Zthr channels and leaves the others empty, so the image keeps its 4
  channels and every model and dataset keeps its shape.
- Rasterization: a line steps along the axis in which it is shallow (|slope| <= 1: for
  f > 1/2 one pixel per i_top column, else one per i_bot row), taking at each pixel centre
  t = k + 1/2 the pixel floor(line(t)) of the other axis; lines are 8-connected.
- 8 bits: value = min(42 * lines through the pixel, 255). One projection has 6 layers,
  so 0..6 lines (a full track) keep distinct levels (6 -> 252) and more (two hits of
  one layer on one point) saturate. Counting lines rather than signals keeps the
  detailed signal (and its MC/flight and saturation differences) out of the image,
  as the paper does.

Storage: a 400x400x4 image is 640 kB; :class:`RoiHits` keeps per RoI hit the layer
(int8), the offset u - p(z) in mm (float32) and the signal (float32), 9 bytes a hit, so
datasets store those and the input pipeline renders images with :func:`render_hough`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from dampeml.features.jagged import event_index, flatten, gather_index
from dampeml.features.tracks import LAYER_FRACTION, LAYER_PROJECTION, position_at_layer

ZTHR = float(np.sqrt(2.0))  # paper: results insensitive to 1..2; better than no split
COUNT_SCALE = 42  # 8-bit level per line through a pixel
N_CHANNELS = 4


@dataclass(frozen=True)
class HoughGeometry:
    """Pixel size and count of a square Hough image; the window is +-pixel_mm * n_pixels / 2."""

    #: pixel size (mm)
    pixel_mm: float
    #: pixels per side
    n_pixels: int = 400

    def __post_init__(self) -> None:
        if not (self.pixel_mm > 0 and self.n_pixels > 0):
            raise ValueError(f"HoughGeometry needs pixel_mm > 0 and n_pixels > 0, got {self}")

    @property
    def half_window_mm(self) -> float:
        return self.pixel_mm * self.n_pixels / 2.0

    @property
    def centre(self) -> float:
        """Image coordinate of a zero offset."""
        return self.n_pixels / 2.0


#: Paper: 50 um pixels (the STK resolution), +-10 mm (>= 99% containment above ~1 TeV).
PRECISE = HoughGeometry(0.050, 400)
#: Paper: 400 um pixels, +-80 mm, run first below ~1 TeV deposited.
COARSE = HoughGeometry(0.400, 400)


@dataclass(frozen=True)
class RoiHits:
    """The STK hits inside the RoI of B events, flat, relative to the prediction that chose them."""

    counts: np.ndarray  # (B,) hits per event
    layer: np.ndarray  # int8, 0-11 (even: measures x)
    offset: np.ndarray  # float32, u - p(z) in mm
    signal: np.ndarray  # float32, MIP

    def __post_init__(self) -> None:
        total = int(np.sum(self.counts))
        if not len(self.layer) == len(self.offset) == len(self.signal) == total:
            raise ValueError(
                f"RoiHits: {len(self.layer)}/{len(self.offset)}/{len(self.signal)} "
                f"layers/offsets/signals for {total} counted hits"
            )

    @classmethod
    def from_arrays(
        cls, layer: Sequence, offset: Sequence, signal: Sequence, counts: np.ndarray | None = None
    ) -> RoiHits:
        """From stored columns: jagged awkward arrays, or flat arrays with `counts`."""
        counts, (layer, offset, signal) = flatten([layer, offset, signal], counts)
        return cls(counts, layer.astype(np.int8), offset.astype(np.float32), signal.astype(np.float32))

    @property
    def n_events(self) -> int:
        return len(self.counts)

    def event_index(self) -> np.ndarray:
        return event_index(self.counts)

    def events(self, start: int, stop: int) -> RoiHits:
        """Events [start, stop): a batch for rendering."""
        bounds = np.concatenate([[0], np.cumsum(self.counts)])
        lo, hi = bounds[start], bounds[min(stop, self.n_events)]
        return RoiHits(self.counts[start:stop], self.layer[lo:hi], self.offset[lo:hi], self.signal[lo:hi])

    def take(self, rows: np.ndarray) -> RoiHits:
        """The events `rows`, in that order (a shuffled or selected sample)."""
        idx = gather_index(self.counts, rows)
        return RoiHits(np.asarray(self.counts)[rows], self.layer[idx], self.offset[idx], self.signal[idx])

    @property
    def nbytes(self) -> int:
        """Stored size: 9 bytes a hit plus a 4-byte count per event."""
        return int(self.layer.nbytes + self.offset.nbytes + self.signal.nbytes + 4 * self.n_events)


def select_roi_hits(
    layer: Sequence,
    pos: Sequence,
    signal: Sequence,
    prediction: np.ndarray,
    geometry: HoughGeometry = PRECISE,
    counts: np.ndarray | None = None,
    keep: Sequence | None = None,
) -> RoiHits:
    """The hits within the RoI of `prediction` (N, 4): |u - p(z)| <= the half window.

    `layer`, `pos`, `signal` (and the optional preselection `keep`, e.g. stk_is_primary)
    are the jagged `stk_*` arrays as read, or flat arrays with `counts`. Events with a
    non-finite prediction get no hits.
    """
    arrays = [layer, pos, signal] + ([keep] if keep is not None else [])
    counts, flat = flatten(arrays, counts)
    layer, pos, signal = flat[:3]
    prediction = np.asarray(prediction, dtype=np.float64)
    if prediction.shape != (len(counts), 4):
        raise ValueError(f"prediction must be ({len(counts)}, 4), got {prediction.shape}")
    ev = event_index(counts)
    layer = layer.astype(np.intp)
    offset = pos.astype(np.float64) - position_at_layer(prediction, ev, layer)
    inside = np.abs(offset) <= geometry.half_window_mm  # False for NaN
    if keep is not None:
        inside &= flat[3].astype(bool)
    return RoiHits(
        np.bincount(ev[inside], minlength=len(counts)).astype(np.int64),
        layer[inside].astype(np.int8),
        offset[inside].astype(np.float32),
        signal[inside].astype(np.float32),
    )


def hit_lines(
    hits: RoiHits, cos_theta: np.ndarray, geometry: HoughGeometry, zthr: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per hit: event, f, the line's right-hand side c (image units), and the channel."""
    cos_theta = np.asarray(cos_theta, dtype=np.float64)
    if cos_theta.shape != (hits.n_events,):
        raise ValueError(f"cos_theta must be ({hits.n_events},), got {cos_theta.shape}")
    ev = hits.event_index()
    layer = hits.layer.astype(np.intp)
    f = LAYER_FRACTION[layer]
    c = hits.offset.astype(np.float64) / geometry.pixel_mm + geometry.centre
    channel = 2 * LAYER_PROJECTION[layer]
    if zthr is not None:
        charge = np.sqrt(np.maximum(hits.signal.astype(np.float64) * cos_theta[ev], 0.0))
        channel = channel + (charge >= zthr)
    return ev, f, c, channel


def _to_8bit(lines: np.ndarray) -> np.ndarray:
    return np.minimum(lines * COUNT_SCALE, 255).astype(np.uint8)


def render_hough(
    hits: RoiHits, cos_theta: np.ndarray, geometry: HoughGeometry = PRECISE, zthr: float | None = ZTHR
) -> np.ndarray:
    """RoI hits of B events -> (B, n, n, 4) uint8 Hough images (conventions in the module doc).

    `cos_theta` (B,) comes from the prediction that selected the hits (tracks.cos_theta).
    """
    ev, f, c, channel = hit_lines(hits, cos_theta, geometry, zthr)
    n = geometry.n_pixels
    out = np.zeros((hits.n_events, n, n, N_CHANNELS), dtype=np.uint8)
    _rasterize(ev, f, c, channel, out)
    return out


@numba.njit(cache=True, nogil=True)
def _rasterize(ev: np.ndarray, f: np.ndarray, c: np.ndarray, channel: np.ndarray, out: np.ndarray) -> None:
    """Step every hit's line across the image, adding COUNT_SCALE (saturating at 255) per pixel.

    Compiled: a high-energy coarse image is hundreds of lines of 400 steps, and the NumPy
    formulation (every lit pixel's flat index, then sorted and counted) spent most of its time
    moving those indices through memory. The arithmetic is the reference's, term by term, in
    float64 without contraction, so the two agree to the pixel. The saturating sum of
    COUNT_SCALE is min(COUNT_SCALE * lines, 255), the 8-bit level of the module doc.
    """
    n = out.shape[1]
    # no bounds checks here: hit_lines makes every event index < B and every channel < 4
    for h in range(len(ev)):
        e, ch, f_h, c_h = ev[h], channel[h], f[h], c[h]
        step_i = f_h > 0.5  # |slope d(delta_bot)/d(delta_top)| = |1 - f| / |f| <= 1: one pixel per i_top
        a = f_h if step_i else 1.0 - f_h  # coefficient of the computed coordinate
        b = 1.0 - f_h if step_i else f_h  # coefficient of the stepping coordinate
        for k in range(n):
            other = np.floor((c_h - b * (k + 0.5)) / a)  # at the pixel centre k + 1/2
            if other >= 0 and other < n:  # False for NaN
                o = int(other)
                i, j = (k, o) if step_i else (o, k)
                level = np.int32(out[e, i, j, ch]) + COUNT_SCALE
                out[e, i, j, ch] = min(level, 255)


def max_pool(images: np.ndarray, factor: int) -> np.ndarray:
    """(B, n, m, C) uint8 images -> (B, n/factor, m/factor, C), each block's maximum.

    What a network's `input_pool` layer computes (it follows the 1/42 rescale, and the maximum
    of rescaled levels is the rescaled maximum, exactly), done on the 8-bit image before the
    network, which then converts 16x fewer values to float (benchmarks/README.md). `n` and `m`
    must be multiples of `factor`.
    """
    images = np.ascontiguousarray(images)
    b, n, m, c = images.shape
    if factor < 1 or n % factor or m % factor:
        raise ValueError(f"cannot max-pool {n}x{m} images by {factor}: the size must be a multiple of it")
    out = np.empty((b, n // factor, (m // factor) * c), dtype=images.dtype)
    _max_pool(images.reshape(b, n, m * c), factor, c, out)
    return out.reshape(b, n // factor, m // factor, c)


@numba.njit(cache=True, nogil=True)
def _max_pool(rows: np.ndarray, k: int, c: int, out: np.ndarray) -> None:
    """Per block of k image rows (each row m*c bytes): their elementwise maximum, then the
    maximum of every k pixels, channel by channel. Branch-free contiguous loops, which LLVM
    vectorizes (5x faster than one loop over output pixels with a branch)."""
    width = rows.shape[2]
    row = np.empty(width, dtype=rows.dtype)
    for e in range(rows.shape[0]):
        for i in range(out.shape[1]):
            row[:] = rows[e, i * k]
            for di in range(1, k):
                other = rows[e, i * k + di]
                for x in range(width):
                    row[x] = max(row[x], other[x])
            pooled = out[e, i]
            for j in range(width // (k * c)):
                for ch in range(c):
                    v = row[j * k * c + ch]
                    for dj in range(1, k):
                        v = max(v, row[(j * k + dj) * c + ch])
                    pooled[j * c + ch] = v


def render_hough_reference(
    hits: RoiHits, cos_theta: np.ndarray, geometry: HoughGeometry = PRECISE, zthr: float | None = ZTHR
) -> np.ndarray:
    """The definition of :func:`render_hough`, one hit at a time over the whole pixel grid. Tests only.

    A pixel (i, j) is lit by a hit when, at the pixel's centre on the line's stepping
    axis, the line lies within the pixel on the other axis: j <= delta_bot(i + 1/2) < j + 1
    if the line is shallow in delta_top (f > 1/2), else i <= delta_top(j + 1/2) < i + 1.
    """
    ev, f, c, channel = hit_lines(hits, cos_theta, geometry, zthr)
    n = geometry.n_pixels
    lines = np.zeros((hits.n_events, n, n, N_CHANNELS), dtype=np.int64)
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    for h in range(len(ev)):
        if f[h] > 0.5:
            delta_bot = (c[h] - (1.0 - f[h]) * (ii + 0.5)) / f[h]
            lit = (jj <= delta_bot) & (delta_bot < jj + 1)
        else:
            delta_top = (c[h] - f[h] * (jj + 0.5)) / (1.0 - f[h])
            lit = (ii <= delta_top) & (delta_top < ii + 1)
        lines[ev[h], :, :, channel[h]] += lit
    return _to_8bit(lines)


def hough_targets(truth: np.ndarray, prediction: np.ndarray, geometry: HoughGeometry = PRECISE) -> np.ndarray:
    """(N, 4) image coordinates of the true track, (truth - prediction) / pixel + n/2.

    The Hough networks' regression target, in the order (x_top, y_top, x_bot, y_bot):
    the point where the true track's lines meet, n/2 for a perfect prediction.
    """
    truth = np.asarray(truth, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    return (truth - prediction) / geometry.pixel_mm + geometry.centre


def apply_offsets(
    prediction: np.ndarray, offsets: np.ndarray, geometry: HoughGeometry = PRECISE
) -> np.ndarray:
    """The refined (N, 4) track from a prediction and the network's output (inverse of hough_targets)."""
    prediction = np.asarray(prediction, dtype=np.float64)
    offsets = np.asarray(offsets, dtype=np.float64)
    return prediction + (offsets - geometry.centre) * geometry.pixel_mm
