"""Hits along a track and the STK charge measured with them (paper, section 2).

For each of the 12 STK layers the hit closest to the track is assigned if it lies within
ASSIGN_WINDOW_MM = 0.3 mm of where the track crosses the layer (the paper found 0.6 mm no
different); a layer without one is skipped, so a track has at most 12 hits. The charge is
the square root of the mean path-length-corrected signal (signal ~ Z^2, in MIP) of the
assigned hits, excluding "abnormal" layers: a signal above ABNORMAL_FACTOR times the
event's median assigned signal (a pre-shower in the STK, the Landau tail). Everything is
vectorized over events and hits; an event with no assigned hit has charge NaN.

`refit_track` (ours, used by the CNN chain before the assignment) moves a track onto the hits
near it: a straight line per projection through the closest hit within REFIT_WINDOW_MM per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def refit_track(
    layer: Sequence,
    pos: Sequence,
    signal: Sequence,
    track: np.ndarray,
    counts: np.ndarray | None = None,
    window_mm: float = REFIT_WINDOW_MM,
    min_hits: int = REFIT_MIN_HITS,
) -> np.ndarray:
    """`track` (N, 4) refitted to its hits: per projection, the least-squares line through the hit
    closest to it within `window_mm` in each layer of that projection (u = u_top + f (u_bot - u_top),
    f the layer's fraction of the lever arm). A projection with fewer than `min_hits` such hits,
    and any NaN track, is kept as it is.

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
        used = (LAYER_PROJECTION == proj)[None, :] & np.isfinite(r)
        f = np.where(used, LAYER_FRACTION[None, :], 0.0)
        v = np.where(used, r, 0.0)
        k, sf, sff = used.sum(axis=1), f.sum(axis=1), (f * f).sum(axis=1)
        sv, svf = v.sum(axis=1), (v * f).sum(axis=1)
        det = k * sff - sf * sf
        ok = (k >= min_hits) & (det > 1e-12)
        b = (k * svf - sf * sv)[ok] / det[ok]
        a = (sv[ok] - b * sf[ok]) / k[ok]
        out[ok, proj] += a
        out[ok, proj + 2] += a + b
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


def stk_charge(
    layer: Sequence,
    pos: Sequence,
    signal: Sequence,
    track: np.ndarray,
    counts: np.ndarray | None = None,
    window_mm: float = ASSIGN_WINDOW_MM,
) -> tuple[np.ndarray, AssignedHits]:
    """The STK charge along `track` (N,) and the hits it used."""
    hits = assign_hits(layer, pos, signal, track, counts, window_mm)
    return charge_from_signals(hits.signal), hits
