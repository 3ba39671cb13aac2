"""Hits along a track and the STK charge measured with them (paper, section 2).

For each of the 12 STK layers the hit closest to the track is assigned if it lies within
ASSIGN_WINDOW_MM = 0.3 mm of where the track crosses the layer (the paper found 0.6 mm no
different); a layer without one is skipped, so a track has at most 12 hits. The charge is
the square root of the mean path-length-corrected signal (signal ~ Z^2, in MIP) of the
assigned hits, excluding "abnormal" layers: a signal above ABNORMAL_FACTOR times the
event's median assigned signal (a pre-shower in the STK, the Landau tail). Where the files
give each cluster's width (`stk_width`, simulation version 3 on), clusters of a single readout
strip are left out of the charge, as DAMPE's analyses leave them out of their mean signal
(their eta correction cannot be applied, and noise or a neighbour under threshold makes them);
a track with no wider cluster keeps them all. Everything is vectorized over events and hits;
an event with no assigned hit has charge NaN.

`refit_track` (ours, used by the CNN chain before the assignment) moves a track onto the hits
near it: a straight line per projection through the closest hit within REFIT_WINDOW_MM per layer,
leaving out up to REFIT_MAX_OUTLIERS hits that lie off the line through the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dampeml import geometry as geo
from dampeml.features.jagged import event_index, flatten
from dampeml.features.tracks import LAYER_FRACTION, LAYER_PROJECTION, cos_theta, position_at_layer

ASSIGN_WINDOW_MM = 0.3
#: Ours (the paper assigns hits to the network's track as it is): the chain refits its track to
#: the hit closest to it within this distance in each layer, before the 0.3 mm assignment.
#: 2 mm gathered the most PeV tracks among 0.5, 1 and 2 (benchmarks/README.md, "The track refit").
REFIT_WINDOW_MM = 2.0
#: A projection (6 layers) is refitted only with at least this many hits; else it keeps its line.
REFIT_MIN_HITS = 3
#: Ours: a refit hit further than this from the line through the projection's other hits is left
#: out (3x the 50 um single-hit resolution). At 56-100 TeV a backsplash cluster 0.1-0.3 mm from the
#: primary's is often the closest to the network's track; fitted, it pulls the line off the primary
#: and the 0.3 mm assignment then takes it (a ~1 MIP signal in a helium track's charge).
#: benchmarks/README.md, "Run 5: the chain's refit leaves out hits off the line".
REFIT_OUTLIER_MM = 0.15
#: At most this many of a projection's (up to 6) hits are left out.
REFIT_MAX_OUTLIERS = 2
#: Our choice: the paper names the exclusion, not its threshold. A Landau-distributed MIP signal
#: exceeds 2.5x its median in a few % of layers; a pre-showering layer is far above it.
ABNORMAL_FACTOR = 2.5


@dataclass(frozen=True)
class AssignedHits:
    """Per event and STK layer: the assigned hit (flat index, -1 if none), its residual and signal."""

    index: np.ndarray  # (N, 12) int64 flat hit index, -1 where the layer is skipped
    residual: np.ndarray  # (N, 12) float64 measured minus track position (mm), NaN if none
    signal: np.ndarray  # (N, 12) float64 path-length corrected signal (MIP), NaN if none

    @property
    def n_hits(self) -> np.ndarray:
        return (self.index >= 0).sum(axis=1)


def assign_hits(
    layer: Sequence,
    pos: Sequence,
    signal: Sequence,
    track: np.ndarray,
    counts: np.ndarray | None = None,
    window_mm: float = ASSIGN_WINDOW_MM,
) -> AssignedHits:
    """The hit closest to `track` (N, 4) in each layer, within `window_mm`; jagged or flat+counts input."""
    counts, (layer, pos, signal) = flatten([layer, pos, signal], counts)
    track = np.asarray(track, dtype=np.float64)
    n = len(counts)
    if track.shape != (n, 4):
        raise ValueError(f"track must be ({n}, 4), got {track.shape}")
    ev = event_index(counts)
    layer = layer.astype(np.intp)
    residual = pos.astype(np.float64) - position_at_layer(track, ev, layer)
    dist = np.abs(residual)
    inside = np.flatnonzero(dist <= window_mm)  # NaN tracks assign nothing
    slot = ev[inside] * geo.STK_N_LAYERS + layer[inside]
    order = np.lexsort((dist[inside], slot))  # per (event, layer), closest first
    slot, picked = slot[order], inside[order]
    first = np.ones(len(slot), dtype=bool)
    first[1:] = slot[1:] != slot[:-1]
    slot, picked = slot[first], picked[first]

    index = np.full(n * geo.STK_N_LAYERS, -1, dtype=np.int64)
    res = np.full(n * geo.STK_N_LAYERS, np.nan)
    sig = np.full(n * geo.STK_N_LAYERS, np.nan)
    index[slot] = picked
    res[slot] = residual[picked]
    cos = cos_theta(track)
    sig[slot] = signal[picked].astype(np.float64) * cos[ev[picked]]
    shape = (n, geo.STK_N_LAYERS)
    return AssignedHits(index.reshape(shape), res.reshape(shape), sig.reshape(shape))


def _line_fit(used: np.ndarray, f: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the least-squares line r = a + b f through the `used` points: (a, b, fitted)."""
    fu, v = np.where(used, f, 0.0), np.where(used, r, 0.0)
    k, sf, sff = used.sum(axis=-1), fu.sum(axis=-1), (fu * fu).sum(axis=-1)
    sv, svf = v.sum(axis=-1), (v * fu).sum(axis=-1)
    det = k * sff - sf * sf
    fitted = det > 1e-12
    b = np.divide(k * svf - sf * sv, det, out=np.zeros_like(det), where=fitted)
    a = np.divide(sv - b * sf, k, out=np.zeros_like(det), where=fitted)
    return a, b, fitted


def _without_outliers(
    used: np.ndarray, f: np.ndarray, r: np.ndarray, outlier_mm: float, rounds: int, min_hits: int
) -> np.ndarray:
    """`used` (N, L) less, per row and round, the point furthest from the line through the row's
    other points when that distance exceeds `outlier_mm` (never below `min_hits` points)."""
    used = used.copy()
    rows = np.arange(len(used))
    for _ in range(rounds):
        left_out = np.full(used.shape, -1.0)  # distance of each used point to the line of the others
        for j in range(used.shape[1]):
            others = used.copy()
            others[:, j] = False
            a, b, fitted = _line_fit(others, f, r)
            ok = fitted & used[:, j]
            left_out[ok, j] = np.abs(r[ok, j] - (a[ok] + b[ok] * f[ok, j]))
        worst = left_out.argmax(axis=1)
        drop = (left_out[rows, worst] > outlier_mm) & (used.sum(axis=1) > min_hits)
        used[drop, worst[drop]] = False
    return used


def refit_track(
    layer: Sequence,
    pos: Sequence,
    signal: Sequence,
    track: np.ndarray,
    counts: np.ndarray | None = None,
    window_mm: float = REFIT_WINDOW_MM,
    min_hits: int = REFIT_MIN_HITS,
    outlier_mm: float | None = REFIT_OUTLIER_MM,
) -> np.ndarray:
    """`track` (N, 4) refitted to its hits: per projection, the least-squares line through the hit
    closest to it within `window_mm` in each layer of that projection (u = u_top + f (u_bot - u_top),
    f the layer's fraction of the lever arm), leaving out up to REFIT_MAX_OUTLIERS hits further
    than `outlier_mm` from the line through the others (None: every hit). A projection with fewer
    than `min_hits` such hits, and any NaN track, is kept as it is.

    Why: a network's track that lands within a millimetre or two of the primary but outside the
    0.3 mm assignment window (a PeV event's clutter) loses its hits; the fit through the hits
    near it moves it onto them.
    """
    track = np.asarray(track, dtype=np.float64)
    # The track is itself a line in f, so the line through the hits is the track plus the line
    # through their residuals: fit r = a + b f, then top += a and bottom += a + b.
    r = assign_hits(layer, pos, signal, track, counts, window_mm).residual  # NaN: no hit near
    out = track.copy()
    for proj in (0, 1):  # columns (proj, proj + 2): top and bottom of x, then of y
        cols = LAYER_PROJECTION == proj
        rp = r[:, cols]
        f = np.broadcast_to(LAYER_FRACTION[cols], rp.shape)
        used = np.isfinite(rp)
        if outlier_mm is not None:
            used = _without_outliers(used, f, rp, outlier_mm, REFIT_MAX_OUTLIERS, min_hits)
        a, b, fitted = _line_fit(used, f, rp)
        ok = fitted & (used.sum(axis=1) >= min_hits)
        out[ok, proj] += a[ok]
        out[ok, proj + 2] += a[ok] + b[ok]
    return out


def charge_from_signals(signals: np.ndarray, abnormal_factor: float = ABNORMAL_FACTOR) -> np.ndarray:
    """(N, L) corrected signals (NaN = no hit) -> (N,) charge sqrt(mean of the normal ones); NaN if none."""
    s = np.asarray(signals, dtype=np.float64)
    has = np.isfinite(s).any(axis=1)
    median = np.full(len(s), np.nan)
    if has.any():
        median[has] = np.nanmedian(s[has], axis=1)
    normal = np.isfinite(s) & (s <= abnormal_factor * median[:, None])
    n = normal.sum(axis=1)
    mean = np.divide(np.where(normal, s, 0.0).sum(axis=1), n, out=np.full(len(s), np.nan), where=n > 0)
    return np.sqrt(np.clip(mean, 0.0, None))


def without_single_strips(signals: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """(N, L) signals with the single-strip clusters' set to NaN (`widths` (N, L): 0 where unknown),
    in every row that keeps a wider cluster: the signals the charge is measured on."""
    single = widths == 1
    wider = (np.isfinite(signals) & (widths > 1)).any(axis=1)
    return np.where(single & wider[:, None], np.nan, signals)


def stk_charge(
    layer: Sequence,
    pos: Sequence,
    signal: Sequence,
    track: np.ndarray,
    counts: np.ndarray | None = None,
    window_mm: float = ASSIGN_WINDOW_MM,
    width: Sequence | None = None,
) -> tuple[np.ndarray, AssignedHits]:
    """The STK charge along `track` (N,) and the hits it used; with the clusters' `width` (jagged, or
    flat with `counts`), single-strip clusters are left out of the charge (module docstring)."""
    hits = assign_hits(layer, pos, signal, track, counts, window_mm)
    if width is None:
        return charge_from_signals(hits.signal), hits
    _, (flat_width,) = flatten([width], counts)
    widths = np.where(hits.index >= 0, flat_width[np.maximum(hits.index, 0)], 0)
    return charge_from_signals(without_single_strips(hits.signal, widths)), hits


def track_charge(events: Mapping, track: np.ndarray) -> np.ndarray:
    """(N,) the STK charge along `track` of events as read from a file: their hits, and the single-strip
    rule where the simulation records the clusters' widths (version 3), as Table 2 measures it."""
    hits = (events["stk_layer"], events["stk_pos"], events["stk_signal"])
    return stk_charge(*hits, track, width=events.get("stk_width"))[0]
