"""The standard track reconstruction (baseline): BGO-seeded combinatorial track finding in the STK.

As the paper's standard method (section 3): the BGO shower axis (:func:`fit_shower_axis`)
gives the region of interest and the seed direction; track finding is a combinatorial
search with straight-line fits, run per projection (x layers, y layers) because every
STK layer is single-sided:

1. Road: hits within ``road_mm`` of the axis in their layer, at most
   ``max_road_hits_per_layer`` per layer (the closest to the axis: bounds the
   combinatorics of PeV events, at the cost of losing the track when the axis is far off).
2. Seeds: every pair of road hits in two outer planes of the projection (``seed_planes``)
   whose slope agrees with the axis within ``seed_slope_tol``.
3. Extension (Kalman-like, two passes): the closest hit in each layer of the projection
   within ``window_mm`` of the seed line, a least-squares line through them, then the
   closest hits within ``refit_window_mm`` of that line and a final fit.
4. Cleaning: duplicates dropped, ghosts (half or more of their hits owned by a better
   candidate: more hits, lower chi2) removed, the ``max_candidates_2d`` best kept per
   projection; every x candidate is combined with every y candidate of the event.

Selections:
- standard (:func:`select_standard`): among candidates passing the quality criteria
  (:func:`passes_quality`) the one with the highest signal (the STK charge of its own hits),
  the helium-analysis choice of the paper ([13]). The criteria are those of DAMPE's public
  helium-analysis code: the track meets the BGO axis at the BGO top within 10 mm and within
  0.15 rad in 3D, chi2/ndf at most 15, at most 2 planes with a hit in one view only, a hit in
  the first plane, and a PSD bar with a signal where the track crosses the PSD (and, as an option
  of that code, off by default, no cluster one readout strip wide);
- ideal (:func:`select_ideal`): the candidate closest to the MC truth. Comparison only:
  it is the only function here that reads truth.

Everything runs on flat hit arrays of all events at once (numpy); no per-event loops.
Tracks are (N, 4) in the :mod:`dampeml.features.tracks` convention, NaN where none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

import numpy as np
from pydantic import ConfigDict

from dampeml import geometry as geo
from dampeml.features.jagged import event_index, flatten
from dampeml.features.shower_axis import fit_shower_axis
from dampeml.features.tracks import LEVER_ARM, cos_theta, position_at, position_at_layer, slopes
from dampeml.reconstruction.hits import charge_from_signals, without_single_strips
from dampeml.reconstruction.psd_charge import psd_layer_charges

N_PLANES = geo.STK_N_LAYERS // 2
_KEY_SCALE = 4096.0  # sort key = slot * scale + (pos + offset): positions stay inside one slot
_KEY_OFFSET = 2000.0


@dataclass(frozen=True)
class StandardConfig:
    """Parameters of the standard reconstruction (mm, slopes dx/dz). Chosen from the detector, not tuned;
    the quality criteria from DAMPE's public helium-analysis code (`--standard FILE.yaml` of evaluate)."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # a mistyped field in a file is an error

    #: Road around the BGO axis: ~2x the axis' 95% error at the STK planes below 100 TeV (~23 mm).
    road_mm: float = 50.0
    #: The road hits kept per layer, the closest to the axis: bounds the combinatorics of PeV events.
    max_road_hits_per_layer: int = 12
    #: Plane pairs (0 = top) that seed tracks: outer planes first, spans of >= 3 planes.
    seed_planes: tuple[tuple[int, int], ...] = ((0, 5), (0, 4), (1, 5), (1, 4), (0, 3), (2, 5))
    #: Seed slope vs axis slope: the axis direction is good to ~0.05 in slope below 100 TeV.
    seed_slope_tol: float = 0.2
    window_mm: float = 1.0  # hit collection around the seed line
    refit_window_mm: float = 0.5  # around the fitted line (resolution 50 um + scattering)
    hit_sigma_mm: float = 0.1  # per-hit error in chi2: resolution and scattering of ~10 GeV particles
    min_hits_2d: int = 3  # hits of a projection's candidate after the extension
    max_candidates_2d: int = 6  # best candidates kept per event and projection after cleaning
    # quality criteria of the standard selection (passes_quality); defaults: DAMPE's helium analysis
    quality_min_hits_2d: int = 4  # hits per projection (DAMPE's electron analysis: at least 4 per view)
    #: chi2 per degree of freedom with hit_sigma_mm per hit (the helium analysis: 15 on its own fit)
    quality_max_chi2_ndf: float = 15.0
    #: Distance to the BGO axis at the BGO top (z = 46 mm, where the helium analysis measures it).
    match_mm: float = 10.0
    #: 3D angle between the track and the BGO axis, radians.
    match_angle_rad: float = 0.15
    #: Planes with a hit in one view only ("x/y non-overlaps"); None: no limit.
    max_unpaired_planes: int | None = 2
    #: A hit in the first (top) plane, in either view: the track starts where the particle enters.
    require_first_plane: bool = True
    #: A PSD bar with a signal where the track crosses the PSD (either layer): the track is the
    #: particle that came in, not one made inside the instrument.
    require_psd_match: bool = True
    #: Refuse a track holding a cluster one readout strip wide (where the files give the widths): an
    #: option of DAMPE's helium-analysis library, off by default since whether the paper's selection
    #: applied it is not known, and our clusters are single-strip far more often than DAMPE's can be
    #: (docs/simulation.md, "A third reading: a cut at hit level").
    refuse_single_strip: bool = False
    #: Events processed together: bounds memory (PeV events make ~1,700 seeds each) and keeps arrays in cache.
    batch_events: int = 256


@dataclass(frozen=True)
class Candidates:
    """3D track candidates of all events, flat; sorted by event."""

    event: np.ndarray  # (C,) event index
    track: np.ndarray  # (C, 4) x_top, y_top, x_bot, y_bot
    n_hits: np.ndarray  # (C, 2) hits in the x and y projection
    chi2_ndf: np.ndarray  # (C,)
    signal: np.ndarray  # (C,) STK charge of the candidate's own hits (abnormal layers excluded)
    match_mm: np.ndarray  # (C,) distance to the BGO axis at the BGO top
    angle: np.ndarray  # (C,) 3D angle to the BGO axis, radians
    unpaired: np.ndarray  # (C,) planes with a hit in one view only
    first_plane: np.ndarray  # (C,) has a hit in the first (top) plane
    psd_match: np.ndarray  # (C,) crosses a PSD bar with a signal (True where no PSD data is given)
    single_strip: np.ndarray  # (C,) its clusters one readout strip wide (0 where the widths are unknown)
    quality: np.ndarray  # (C,) passes the standard quality criteria of the config it was made with

    def __len__(self) -> int:
        return len(self.event)

    @classmethod
    def concat(cls, parts: list[Candidates]) -> Candidates:
        """One pool from the pools of consecutive event batches (event indices already global)."""
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


@dataclass(frozen=True)
class StandardResult:
    """Output of :func:`reconstruct`: the standard track, the axis seed and the candidate pool."""

    track: np.ndarray  # (N, 4) standard selection, NaN where no candidate passes
    axis: np.ndarray  # (N, 4) BGO shower axis used as seed
    candidates: Candidates
    n_candidates: np.ndarray = field(repr=False)  # (N,) candidates per event


def ragged_arange(counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(c) for each c in counts."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts


def _first_per_group(group: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Indices of the first element of each group after sorting by keys (last key most significant)."""
    order = np.lexsort((*keys, group))
    g = group[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    return order[first]


@dataclass
class _Road:
    """Road hits sorted by (event, layer, position), with per-slot offsets for lookups."""

    pos: np.ndarray
    signal: np.ndarray
    width: np.ndarray  # readout strips of each cluster, 0 where the files do not give it
    slot: np.ndarray
    key: np.ndarray
    start: np.ndarray  # (N, 12)
    count: np.ndarray  # (N, 12)


def _road(
    counts: np.ndarray,
    layer: np.ndarray,
    pos: np.ndarray,
    signal: np.ndarray,
    width: np.ndarray,
    axis: np.ndarray,
    cfg: StandardConfig,
) -> _Road:
    n = len(counts)
    ev = event_index(counts)
    layer = layer.astype(np.int64)
    pos = pos.astype(np.float64)
    dist = np.abs(pos - position_at_layer(axis, ev, layer))
    inside = np.flatnonzero(dist <= cfg.road_mm)  # NaN axis: nothing inside
    slot = ev[inside] * geo.STK_N_LAYERS + layer[inside]
    order = np.lexsort((dist[inside], slot))
    rank = ragged_arange(np.bincount(slot, minlength=n * geo.STK_N_LAYERS))
    keep = inside[order][rank < cfg.max_road_hits_per_layer]
    slot = ev[keep] * geo.STK_N_LAYERS + layer[keep]
    order = np.lexsort((pos[keep], slot))
    keep, slot = keep[order], slot[order]
    cnt = np.bincount(slot, minlength=n * geo.STK_N_LAYERS)
    start = np.cumsum(cnt) - cnt
    shape = (n, geo.STK_N_LAYERS)
    return _Road(
        pos[keep],
        signal[keep].astype(np.float64),
        width[keep],
        slot,
        slot * _KEY_SCALE + (pos[keep] + _KEY_OFFSET),
        start.reshape(shape),
        cnt.reshape(shape),
    )


def _nearest(road: _Road, slot: np.ndarray, u: np.ndarray, window: float) -> np.ndarray:
    """Road index of the hit closest to u in each slot, -1 if none within window."""
    q = slot * _KEY_SCALE + (np.clip(np.nan_to_num(u, nan=1e4), -1900.0, 1900.0) + _KEY_OFFSET)
    best = np.full(len(q), -1, dtype=np.int64)
    if len(road.key) == 0:
        return best
    i = np.searchsorted(road.key, q)
    best_d = np.full(len(q), np.inf)
    for c in (i - 1, i):
        cc = np.clip(c, 0, len(road.key) - 1)
        d = np.where(road.slot[cc] == slot, np.abs(road.pos[cc] - u), np.inf)
        better = d < best_d
        best = np.where(better, cc, best)
        best_d = np.where(better, d, best_d)
    return np.where(best_d <= window, best, -1)


def _fit(z: np.ndarray, u: np.ndarray, has: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares line u = a + b (z - Z_TOP) through the rows' hits: (a, b), NaN if < 2 hits."""
    w = has.astype(np.float64)
    zz = z - geo.Z_TOP
    uu = np.where(has, u, 0.0)
    s, sz, szz = w.sum(1), (w * zz).sum(1), (w * zz * zz).sum(1)
    su, szu = (w * uu).sum(1), (w * zz * uu).sum(1)
    det = s * szz - sz * sz
    ok = (s >= 2) & (det > 0)
    det = np.where(ok, det, 1.0)
    b = np.where(ok, (s * szu - sz * su) / det, np.nan)
    a = np.where(ok, (su - b * sz) / np.where(ok, s, 1.0), np.nan)
    return a, b


def _candidates_2d(road: _Road, axis: np.ndarray, cfg: StandardConfig) -> dict[str, np.ndarray]:
    """Track candidates per projection: event, proj, hits (M, 6) road indices, a, b, n, chi2."""
    n = road.start.shape[0]
    ax_tx, ax_ty = slopes(axis)
    out = []
    for proj in (0, 1):
        layers = 2 * np.arange(N_PLANES) + proj
        z_l = geo.STK_LAYER_Z[layers]
        ax_slope = ax_tx if proj == 0 else ax_ty
        seeds = []
        for pa, pb in cfg.seed_planes:
            la, lb = layers[pa], layers[pb]
            na, nb = road.count[:, la], road.count[:, lb]
            npair = na * nb
            e = np.repeat(np.arange(n), npair)
            k = ragged_arange(npair)
            ia = road.start[e, la] + k // nb[e]
            ib = road.start[e, lb] + k % nb[e]
            slope = (road.pos[ib] - road.pos[ia]) / (geo.STK_LAYER_Z[lb] - geo.STK_LAYER_Z[la])
            ok = np.abs(slope - ax_slope[e]) <= cfg.seed_slope_tol
            a = road.pos[ia] - slope * (geo.STK_LAYER_Z[la] - geo.Z_TOP)
            seeds.append((e[ok], a[ok], slope[ok]))
        e = np.concatenate([s[0] for s in seeds])
        a = np.concatenate([s[1] for s in seeds])
        b = np.concatenate([s[2] for s in seeds])
        slot = e[:, None] * geo.STK_N_LAYERS + layers[None, :]
        for window in (cfg.window_mm, cfg.refit_window_mm):
            u = a[:, None] + b[:, None] * (z_l[None, :] - geo.Z_TOP)
            hits = _nearest(road, slot.ravel(), u.ravel(), window).reshape(slot.shape)
            has = hits >= 0
            a, b = _fit(z_l[None, :], road.pos[np.maximum(hits, 0)], has)
        u = a[:, None] + b[:, None] * (z_l[None, :] - geo.Z_TOP)
        res = np.where(has, road.pos[np.maximum(hits, 0)] - u, 0.0)
        nh = has.sum(1)
        chi2 = (res**2).sum(1) / cfg.hit_sigma_mm**2
        ok = (nh >= cfg.min_hits_2d) & np.isfinite(a)
        out.append(
            {
                "event": e[ok],
                "proj": np.full(int(ok.sum()), proj),
                "hits": hits[ok],
                "a": a[ok],
                "b": b[ok],
                "n": nh[ok],
                "chi2": chi2[ok],
            }
        )
    return {k: np.concatenate([o[k] for o in out]) for k in out[0]}


_HASH_MULTIPLIERS = np.random.default_rng(0x5EED).integers(1, 2**63, 16, dtype=np.uint64) | np.uint64(1)


def _row_hash(rows: np.ndarray) -> np.ndarray:
    """64-bit hash of integer rows (wrapping multiply-add): a 1D key, much faster to sort than rows."""
    h = np.zeros(len(rows), dtype=np.uint64)
    for j in range(rows.shape[1]):
        h = (h ^ (rows[:, j].astype(np.uint64) + np.uint64(1))) * _HASH_MULTIPLIERS[j]
    return h


def _clean_2d(c: dict[str, np.ndarray], n_road: int, cfg: StandardConfig) -> dict[str, np.ndarray]:
    """Drop duplicates and ghosts; keep the best max_candidates_2d per event and projection."""
    if len(c["event"]) == 0:
        return c
    _, uniq = np.unique(_row_hash(np.column_stack([c["event"], c["proj"], c["hits"]])), return_index=True)
    c = {k: v[uniq] for k, v in c.items()}
    group = c["event"] * 2 + c["proj"]
    order = np.lexsort((c["chi2"], -c["n"], group))  # best first within a group
    c = {k: v[order] for k, v in c.items()}
    group = group[order]
    rank = np.arange(len(group))
    # owner of each road hit: the best candidate using it
    m = len(rank)
    hit_flat = c["hits"].ravel()
    used = hit_flat >= 0
    owner = np.full(n_road, m, dtype=np.int64)
    np.minimum.at(owner, hit_flat[used], np.repeat(rank, c["hits"].shape[1])[used])
    shared = np.where(c["hits"] >= 0, owner[np.maximum(c["hits"], 0)] < rank[:, None], False).sum(1)
    keep = 2 * shared < c["n"]
    c = {k: v[keep] for k, v in c.items()}
    group = group[keep]
    within = ragged_arange(np.unique(group, return_counts=True)[1]) if len(group) else group
    keep = within < cfg.max_candidates_2d
    return {k: v[keep] for k, v in c.items()}


_EMPTY_2D = {
    "event": np.zeros(0, dtype=np.int64),
    "proj": np.zeros(0, dtype=np.int64),
    "hits": np.zeros((0, N_PLANES), dtype=np.int64),
    "a": np.zeros(0),
    "b": np.zeros(0),
    "n": np.zeros(0, dtype=np.int64),
    "chi2": np.zeros(0),
}


def find_candidates(
    events: Mapping,
    counts: np.ndarray | None = None,
    config: StandardConfig | None = None,
    seed: np.ndarray | None = None,
) -> tuple[Candidates, np.ndarray]:
    """Track candidates of all events and the BGO seed they were searched around; no truth is read.

    `events` needs bgo_energy (N, 14, 22) and stk_layer / stk_pos / stk_signal (jagged,
    or flat with `counts`). The seed is the shower-axis fit unless `seed` gives another
    (N, 4) track, e.g. a BGO direction network's (the paper's Table 3, option a).
    """
    cfg = config or StandardConfig()
    bgo = np.asarray(events["bgo_energy"])
    if bgo.ndim != 3 or bgo.shape[1:] != (geo.BGO_N_LAYERS, geo.BGO_N_BARS):
        raise ValueError(
            f"bgo_energy must be (N, {geo.BGO_N_LAYERS}, {geo.BGO_N_BARS}) MeV per bar, got {bgo.shape}"
        )
    if seed is None:
        axis, _ = fit_shower_axis(bgo)
    else:
        axis = np.asarray(seed, dtype=np.float64)
        if axis.shape != (len(bgo), 4):
            raise ValueError(f"seed must be ({len(bgo)}, 4) tracks, got {axis.shape}")
    # the clusters' widths where the files give them (0: unknown): the charge's single-strip rule
    names = ["stk_layer", "stk_pos", "stk_signal", *(["stk_width"] if "stk_width" in events else [])]
    counts, (layer, pos, signal, *width) = flatten([events[k] for k in names], counts)
    width = width[0] if width else np.zeros(len(layer), dtype=np.int8)
    if len(counts) != len(axis):
        raise ValueError(f"{len(axis)} BGO events but {len(counts)} STK hit lists")
    psd = np.asarray(events["psd_energy"]) if "psd_energy" in events else None
    if cfg.require_psd_match and psd is None:
        raise ValueError(
            "the standard selection's PSD match needs psd_energy (N, 2, 41) in the events; "
            "pass them, or a StandardConfig with require_psd_match=False"
        )
    offsets = np.concatenate([[0], np.cumsum(counts)])
    # an empty pool first, so that zero events still give typed, correctly shaped arrays
    parts = [
        _combine(
            _EMPTY_2D, _road(counts[:0], layer[:0], pos[:0], signal[:0], width[:0], axis[:0], cfg), axis[:0],
            0, cfg,
            psd=None if psd is None else psd[:0],
        )
    ]  # fmt: skip
    for lo in range(0, len(counts), cfg.batch_events):
        hi = min(lo + cfg.batch_events, len(counts))
        a, b = offsets[lo], offsets[hi]
        road = _road(counts[lo:hi], layer[a:b], pos[a:b], signal[a:b], width[a:b], axis[lo:hi], cfg)
        c2 = _clean_2d(_candidates_2d(road, axis[lo:hi], cfg), len(road.pos), cfg)
        batch_psd = None if psd is None else psd[lo:hi]
        parts.append(_combine(c2, road, axis[lo:hi], hi - lo, cfg, event_offset=lo, psd=batch_psd))
    return Candidates.concat(parts), axis


def _combine(
    c: dict[str, np.ndarray],
    road: _Road,
    axis: np.ndarray,
    n: int,
    cfg: StandardConfig,
    event_offset: int = 0,
    psd: np.ndarray | None = None,
) -> Candidates:
    """Every x candidate with every y candidate of its event: 3D candidates and their features."""
    is_x = c["proj"] == 0
    ix, iy = np.flatnonzero(is_x), np.flatnonzero(~is_x)
    cx = np.bincount(c["event"][ix], minlength=n)
    cy = np.bincount(c["event"][iy], minlength=n)
    sx, sy = np.cumsum(cx) - cx, np.cumsum(cy) - cy
    npair = cx * cy
    e = np.repeat(np.arange(n), npair)
    k = ragged_arange(npair)
    px = ix[sx[e] + k // np.maximum(cy[e], 1)]
    py = iy[sy[e] + k % np.maximum(cy[e], 1)]
    a, b = c["a"], c["b"]
    track = np.column_stack([a[px], a[py], a[px] + b[px] * LEVER_ARM, a[py] + b[py] * LEVER_ARM])
    hits = np.empty((len(e), geo.STK_N_LAYERS), dtype=np.int64)
    hits[:, 0::2], hits[:, 1::2] = c["hits"][px], c["hits"][py]
    sig = np.where(hits >= 0, road.signal[np.maximum(hits, 0)], np.nan) * cos_theta(track)[:, None]
    width = np.where(hits >= 0, road.width[np.maximum(hits, 0)], 0)
    sig = without_single_strips(sig, width)
    n_hits = np.column_stack([c["n"][px], c["n"][py]])
    chi2_ndf = (c["chi2"][px] + c["chi2"][py]) / np.maximum(n_hits.sum(1) - 4, 1)
    ax = axis[e]
    match = distance_at_bgo_top(track, ax)
    angle = angle_between(track, ax)
    has_x, has_y = c["hits"][px] >= 0, c["hits"][py] >= 0  # (C, 6) per plane
    unpaired = (has_x != has_y).sum(1)
    first_plane = has_x[:, 0] | has_y[:, 0]
    if psd is None:
        psd_match = np.ones(len(e), dtype=bool)
    else:
        psd_match = np.nan_to_num(psd_layer_charges(psd[e], track), nan=0.0).max(1) > 0
    signal = charge_from_signals(sig)
    cands = Candidates(
        e + event_offset, track, n_hits, chi2_ndf, signal, match, angle, unpaired, first_plane, psd_match,
        (width == 1).sum(1), np.zeros(len(e), dtype=bool),
    )  # fmt: skip
    return replace(cands, quality=passes_quality(cands, cfg))


def distance_at_bgo_top(track: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """(C,) distance (mm) between (C, 4) tracks and (C, 4) axes where they cross the BGO top."""
    (x, y), (u, v) = position_at(track, geo.BGO_Z_TOP), position_at(axis, geo.BGO_Z_TOP)
    return np.hypot(x - u, y - v)


def angle_between(track: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """(C,) 3D angle (rad) between the directions of (C, 4) tracks and (C, 4) axes."""
    d = [np.column_stack([*slopes(t), np.ones(len(t))]) for t in (track, axis)]
    cos = (d[0] * d[1]).sum(1) / np.linalg.norm(d[0], axis=1) / np.linalg.norm(d[1], axis=1)
    return np.arccos(np.clip(cos, -1.0, 1.0))


def passes_quality(cands: Candidates, cfg: StandardConfig) -> np.ndarray:
    """(C,) the standard selection's quality criteria (StandardConfig) on the candidates' features.

    Separate from the pattern recognition, so that other criteria can be tried on one candidate
    pool (benchmarks/bench_standard_tracking.py --match-mm).
    """
    ok = (
        (cands.n_hits.min(1) >= cfg.quality_min_hits_2d)
        & (cands.chi2_ndf <= cfg.quality_max_chi2_ndf)
        & (cands.match_mm <= cfg.match_mm)
        & (cands.angle <= cfg.match_angle_rad)
    )
    if cfg.max_unpaired_planes is not None:
        ok &= cands.unpaired <= cfg.max_unpaired_planes
    if cfg.require_first_plane:
        ok &= cands.first_plane
    if cfg.require_psd_match:
        ok &= cands.psd_match
    if cfg.refuse_single_strip:
        ok &= cands.single_strip == 0
    return ok


def select_standard(cands: Candidates, n_events: int) -> np.ndarray:
    """(N, 4): per event, the quality candidate with the highest signal; NaN where none passes."""
    out = np.full((n_events, 4), np.nan)
    q = np.flatnonzero(cands.quality & np.isfinite(cands.signal))
    if len(q):
        best = q[_first_per_group(cands.event[q], -cands.signal[q])]
        out[cands.event[best]] = cands.track[best]
    return out


def select_ideal(cands: Candidates, true_track: np.ndarray) -> np.ndarray:
    """(N, 4): per event, the candidate closest to the true track (sum of squared offsets). MC only."""
    truth = np.asarray(true_track, dtype=np.float64)
    out = np.full(truth.shape, np.nan)
    if len(cands):
        d = ((cands.track - truth[cands.event]) ** 2).sum(1)
        best = _first_per_group(cands.event, d)
        out[cands.event[best]] = cands.track[best]
    return out


def reconstruct(
    events: Mapping,
    counts: np.ndarray | None = None,
    config: StandardConfig | None = None,
    seed: np.ndarray | None = None,
) -> StandardResult:
    """The standard reconstruction with the standard selection; no truth is read.

    `seed`: (N, 4) tracks to search around instead of the shower-axis fit (see find_candidates).
    """
    cands, axis = find_candidates(events, counts, config, seed)
    n = len(axis)
    return StandardResult(select_standard(cands, n), axis, cands, np.bincount(cands.event, minlength=n))


__all__ = [
    "Candidates",
    "StandardConfig",
    "StandardResult",
    "angle_between",
    "distance_at_bgo_top",
    "find_candidates",
    "passes_quality",
    "reconstruct",
    "select_ideal",
    "select_standard",
]
