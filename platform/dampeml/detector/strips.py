"""The STK at strip level (simulation version 3): hits -> charge on strips -> clusters.

Version 2 turns each particle's crossing into a cluster at its smeared position. Version 3 follows
the charge: each crossing deposits its signal along its path through the 320 um of silicon (spread
over the strips it crosses in proportion to its incidence, plus diffusion); the implant strips have
a 121 um pitch and every second one is read out (242 um), so the charge on a floating strip reaches
the two readout strips beside it through capacitive coupling, 26% each (the signal of a particle
crossing between two readout strips is half that of one crossing a readout strip). Each readout
channel adds its noise; channels above a seed threshold start clusters that grow over the
neighbours above a lower one; dead channels read nothing, and the gaps between ladders have no
silicon. A cluster's position is its signals' centre of gravity; its signal is corrected for the
coupling loss from how it shares between its two largest strips (eta), as the analysis does
offline. Particles closer than a strip or two share clusters, whatever made them.

Constants are DAMPE's where published (pitches, thickness); the coupling is read off the helium
analysis's eta correction of flight data (below); noise, thresholds, dead channels and the gap width
are typical of such sensors and stated as ours (docs/simulation.md).
"""

from __future__ import annotations

import numpy as np

from dampeml import geometry as geo
from dampeml.detector.stk import Hits

IMPLANT_PITCH_MM = geo.STK_READOUT_PITCH / 2  # 121 um
THICKNESS_MM = 0.320
#: ours: transverse diffusion of the collected charge over 320 um (rms)
DIFFUSION_MM = 0.008
#: the share of a floating strip's charge each adjacent readout strip sees. DAMPE's helium-analysis
#: code (myDampeLib, etacorr.cpp) corrects flight clusters with the protons' most probable signal as a
#: function of eta = s_max / (s_max + s_neighbour): at normal incidence 66.3 at eta = 1 (on a readout
#: strip) and 34.5 at eta = 0.5 (between two): 0.52 = 2 x this.
FLOATING_COUPLING = 0.26
#: noise per readout channel, MIP: ~3 ADC against the 66 ADC myDampeLib's fit gives a MIP on one
#: strip (our reading of its units)
NOISE_MIP = 0.045
#: ours: a MIP between two readout strips leaves 0.26 MIP (5.8 sigma) on each, above the seed
SEED_SNR = 4.0
NEIGHBOUR_SNR = 1.5
#: ours: dead (or masked noisy) channels, a fixed map
DEAD_CHANNEL_FRACTION = 0.003
#: ours: the silicon missing between the active areas of two adjacent ladders
LADDER_GAP_MM = 1.0
LADDER_WIDTH_MM = 384 * geo.STK_READOUT_PITCH
#: implant strips a crossing's charge is spread over, at most (a path of ~0.85 mm: 70 degrees)
MAX_IMPLANTS = 8
#: ours: shape of the gamma weights of each implant's share (energy loss in thin slices fluctuates)
SLICE_FLUCTUATION_SHAPE = 2.0
#: Study, off (0) in every version: the share of a readout channel's charge each readout neighbour
#: picks up through their direct coupling (cross-talk), taken from the channel itself
#: (benchmarks/bench_stk_strips.py --crosstalk; docs/simulation.md, "The rule with a readout
#: cross-talk, a study")
READOUT_CROSSTALK = 0.0
#: the stored cluster signal of a cluster wider than two strips: the mean collection of charge
#: spread evenly over readout and floating implants
WIDE_COLLECTION = (1.0 + 2 * FLOATING_COUPLING) / 2
_FIRST_READOUT_MM = -geo.STK_HALF_WIDTH + geo.STK_READOUT_PITCH / 2


def dead_channels() -> np.ndarray:
    """(layers, halves, channels) bool: the fixed map of dead channels (the same for every run)."""
    rng = np.random.default_rng(0xDEAD)
    shape = (geo.STK_N_LAYERS, geo.STK_N_HALVES, geo.STK_CHANNELS_PER_HALF)
    return rng.random(shape) < DEAD_CHANNEL_FRACTION


DEAD = dead_channels()


def in_ladder_gap(pos: np.ndarray) -> np.ndarray:
    """True where a measured coordinate falls between two ladders' active areas (no silicon)."""
    x = np.mod(pos + geo.STK_HALF_WIDTH, LADDER_WIDTH_MM)
    return (x < LADDER_GAP_MM / 2) | (x > LADDER_WIDTH_MM - LADDER_GAP_MM / 2)


def readout_charges(hits: Hits, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each crossing's charge on the readout channels: (hit index, channel, charge), noise-free.

    The charge is spread evenly along the crossing's projected path through the silicon (at least
    the diffusion's width), shared by the implant strips in proportion to their overlap with it,
    each share fluctuating (energy loss in thin slices is far from even: gamma-distributed weights,
    shape SLICE_FLUCTUATION_SHAPE); the silicon in a ladder gap collects nothing.
    """
    h = len(hits.event)
    half = np.maximum(np.abs(hits.slope) * THICKNESS_MM / 2, DIFFUSION_MM)
    lo, hi = hits.pos - half, hits.pos + half
    first = np.floor((lo - _FIRST_READOUT_MM) / IMPLANT_PITCH_MM + 0.5).astype(np.int64)
    implant = first[:, None] + np.arange(MAX_IMPLANTS)[None, :]
    edge = _FIRST_READOUT_MM + (implant - 0.5) * IMPLANT_PITCH_MM
    overlap = np.clip(
        np.minimum(hi[:, None], edge + IMPLANT_PITCH_MM) - np.maximum(lo[:, None], edge), 0.0, None
    )
    weight = overlap * rng.gamma(SLICE_FLUCTUATION_SHAPE, 1.0, overlap.shape)
    weight = np.where(in_ladder_gap(edge + IMPLANT_PITCH_MM / 2), 0.0, weight)
    total = np.maximum(weight.sum(axis=1), 1e-12)
    # a path wider than MAX_IMPLANTS strips (beyond ~70 degrees) puts its charge on its first ones
    q = hits.signal[:, None] * weight / total[:, None]
    # the gap's share of a crossing is lost, not moved to the strips beside it
    q *= (1.0 - _gap_share(lo, hi))[:, None]
    hit = np.repeat(np.arange(h), MAX_IMPLANTS)
    implant, q = implant.ravel(), q.ravel()
    has = q > 0
    hit, implant, q = hit[has], implant[has], q[has]
    readout = implant % 2 == 0
    idx = np.concatenate([hit[readout], hit[~readout], hit[~readout]])
    channel = np.concatenate(
        [implant[readout] // 2, (implant[~readout] - 1) // 2, (implant[~readout] + 1) // 2]
    )
    charge = np.concatenate([q[readout], FLOATING_COUPLING * q[~readout], FLOATING_COUPLING * q[~readout]])
    if READOUT_CROSSTALK:
        x = READOUT_CROSSTALK
        idx = np.tile(idx, 3)
        channel = np.concatenate([channel, channel - 1, channel + 1])
        charge = np.concatenate([(1.0 - 2.0 * x) * charge, x * charge, x * charge])
    return idx, channel, charge


def _gap_share(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The fraction of each path [lo, hi] that lies in a ladder gap (a path crosses at most one)."""
    x_lo = lo + geo.STK_HALF_WIDTH
    centre = np.rint(x_lo / LADDER_WIDTH_MM) * LADDER_WIDTH_MM  # the nearest ladder boundary
    g_lo, g_hi = centre - LADDER_GAP_MM / 2, centre + LADDER_GAP_MM / 2
    x_hi = hi + geo.STK_HALF_WIDTH
    inside = np.clip(np.minimum(x_hi, g_hi) - np.maximum(x_lo, g_lo), 0.0, None)
    return inside / np.maximum(x_hi - x_lo, 1e-12)


def eta_collection(eta: np.ndarray) -> np.ndarray:
    """Fraction of the deposited charge a cluster collects at eta = s_max / (s_max + s_neighbour) (0.5-1),
    at normal incidence: charge split between a readout implant (share a) and the floating one beside
    it gives eta = (a + c (1 - a)) / (a + 2 c (1 - a)) and collects a + 2 c (1 - a), c the coupling."""
    e = np.clip(eta, 0.5, 1.0)
    c = FLOATING_COUPLING
    a = c * (1.0 - 2.0 * e) / (e * (1.0 - 2.0 * c) - 1.0 + c)
    return a + 2.0 * c * (1.0 - a)


def digitize_strips(rng: np.random.Generator, hits: Hits, signal_scale: float = 1.0) -> dict[str, np.ndarray]:
    """STK hits -> clusters through the strips; the same arrays as stk.digitize (sorted by event,
    layer, position): event, layer, half, channel, pos, signal, is_primary."""
    h = hits.select((hits.plane >= 0) & (np.abs(hits.other) < geo.STK_HALF_WIDTH))
    idx, channel, charge = readout_charges(h, rng)
    half = (h.other >= 0).astype(np.int64)[idx]
    ok = (channel >= 0) & (channel < geo.STK_CHANNELS_PER_HALF) & (charge > 0)
    idx, channel, charge, half = idx[ok], channel[ok], charge[ok], half[ok]
    n_ch = geo.STK_CHANNELS_PER_HALF
    key = ((h.event[idx] * geo.STK_N_LAYERS + h.plane[idx]) * geo.STK_N_HALVES + half) * n_ch + channel
    # each fired channel and its neighbours get noise
    fired, inverse = np.unique(key, return_inverse=True)
    near = (fired[:, None] + np.array([-1, 1])[None, :]).ravel()
    near = near[(near // n_ch) == np.repeat(fired // n_ch, 2)]  # not across rows (event, layer, half)
    keys = np.union1d(fired, near)
    at = np.searchsorted(keys, fired)
    signal = np.zeros(len(keys))
    primary = np.zeros(len(keys))
    signal[at] = np.bincount(inverse, charge, len(fired))
    primary[at] = np.bincount(inverse, np.where(h.primary[idx], charge, 0.0), len(fired))
    strip_signal = (signal + rng.normal(0.0, NOISE_MIP, len(keys))) * signal_scale
    row, ch = keys // n_ch, keys % n_ch
    layer_half = row % (geo.STK_N_LAYERS * geo.STK_N_HALVES)
    dead = DEAD[layer_half // geo.STK_N_HALVES, layer_half % geo.STK_N_HALVES, ch]
    strip_signal = np.where(dead, 0.0, strip_signal)
    # clusters: runs of adjacent channels above the neighbour threshold holding a seed
    above = strip_signal > NEIGHBOUR_SNR * NOISE_MIP
    keys, strip_signal, primary, signal = keys[above], strip_signal[above], primary[above], signal[above]
    start = np.ones(len(keys), dtype=bool)
    start[1:] = np.diff(keys) != 1  # a new row (event, layer, half) or a gap
    cid = np.cumsum(start) - 1
    n_cl = int(cid[-1]) + 1 if len(cid) else 0
    s_sum = np.bincount(cid, strip_signal, n_cl)
    seeded = np.bincount(cid, strip_signal >= SEED_SNR * NOISE_MIP, n_cl) > 0
    centre = _FIRST_READOUT_MM + (keys % n_ch) * geo.STK_READOUT_PITCH
    pos = np.bincount(cid, strip_signal * centre, n_cl) / np.where(s_sum > 0, s_sum, 1.0)
    width = np.bincount(cid, minlength=n_cl)
    prim_share = np.bincount(cid, primary, n_cl) / np.maximum(np.bincount(cid, signal, n_cl), 1e-12)
    # eta = s_max / (s_max + s_neighbour) of 1-2 strip clusters (wider ones: charge spread evenly)
    first = np.flatnonzero(start)
    second = np.minimum(first + 1, len(keys) - 1)
    larger = np.where(width == 2, np.maximum(strip_signal[first], strip_signal[second]), s_sum)
    eta = np.where(width <= 2, larger / np.where(s_sum > 0, s_sum, 1.0), np.nan)
    collection = np.where(width > 2, WIDE_COLLECTION, eta_collection(np.nan_to_num(eta, nan=1.0)))
    row_c = keys[first] // n_ch
    keep = seeded
    ev = row_c // (geo.STK_N_LAYERS * geo.STK_N_HALVES)
    layer = (row_c // geo.STK_N_HALVES) % geo.STK_N_LAYERS
    half_c = row_c % geo.STK_N_HALVES
    cpos = pos.astype(np.float32)
    out_channel = np.clip(
        np.floor((cpos.astype(np.float64) + geo.STK_HALF_WIDTH) / geo.STK_READOUT_PITCH), 0, n_ch - 1
    )
    order = np.lexsort((cpos[keep], layer[keep], ev[keep]))
    return {
        "event": ev[keep][order],
        "layer": layer[keep][order].astype(np.int8),
        "half": half_c[keep][order].astype(np.int8),
        "channel": out_channel[keep][order].astype(np.int16),
        "pos": cpos[keep][order],
        "signal": (s_sum / collection)[keep][order].astype(np.float32),
        "is_primary": (prim_share >= 0.5)[keep][order],
        # for validation, not written to files (yet)
        "width": width[keep][order].astype(np.int16),
        "raw_signal": s_sum[keep][order].astype(np.float32),
        "eta": eta[keep][order].astype(np.float32),
    }
