"""STK hits: the primary, secondaries after interactions, pre-shower pairs, backsplash, noise.

Every source produces flat hit lists (event, plane, measured and other coordinate,
signal, is-primary). They are concatenated, smeared, cut to the active area, merged
into clusters where two particles fall within one readout cluster, and finally turned
into readout coordinates (half, channel). No per-hit Python loops.

Backsplash (albedo) from the calorimeter is what makes tracking hard at high energy:
its mean multiplicity grows as a power of the BGO deposited energy (~0.4 x (E_dep /
10 GeV)^0.72: ~2 at 100 GeV, ~130 at 30 TeV deposited, ~670 at 300 TeV), emitted from
around the shower's entry point with a cosine law about the upward vertical. Most of it
leaves single clusters (soft photons, electrons); 30% is charged hadrons crossing the STK
upwards as straight tracks until they range out, half of them slow and heavily ionising,
so they make track candidates with signals well above a proton's. Those numbers are not
published; the paper's standard-method efficiencies calibrate them (docs/simulation.md).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from dampeml import geometry as geo
from dampeml.detector.physics import landau_signal

BACKSPLASH_NORM = 0.4
BACKSPLASH_INDEX = 0.72
BACKSPLASH_DEPTH_MM = 150.0  # layer weight ~ exp(-(z_BGO - z_layer) / this)
BACKSPLASH_SLOW_FRACTION = 0.12  # stopping particles: large signals
#: Share of albedo particles that are charged hadrons crossing several layers (tracks).
BACKSPLASH_CHARGED_FRACTION = 0.3
BACKSPLASH_COSINE_LAW = True
#: Charged albedo of hadronic showers is mostly slow protons (evaporation, tens-hundreds MeV): heavy ionisers.
BACKSPLASH_TRACK_SLOW_FRACTION = 0.5
BACKSPLASH_TRACK_SPREAD_MM = 10.0  # origin spread around the shower entry point
BACKSPLASH_STOP_FAST = 0.15  # probability to stop before the next layer up
BACKSPLASH_STOP_SLOW = 0.5
#: Albedo reaching the PSD, relative to the STK's: the PSD bars (28 x 884 mm) are large
#: targets, so at 100 TeV several particles cross the bars on the primary's path and
#: spoil the PSD charge (paper, Fig. 2 left).
PSD_BACKSPLASH_SCALE = 2.0
NOISE_CLUSTERS_PER_EVENT = 0.5
MERGE_DISTANCE_MM = 0.25  # two particles closer than this make one cluster

#: Planes secondaries can reach: the two PSD layers (negative ids -2, -1) then STK 0-11.
PLANE_Z = np.concatenate([geo.PSD_Z, geo.STK_LAYER_Z])
PLANE_ID = np.concatenate([np.arange(-geo.PSD_N_LAYERS, 0), np.arange(geo.STK_N_LAYERS)])
PSD_PLANES = PLANE_ID[PLANE_ID < 0]
STK_PLANES = PLANE_ID[PLANE_ID >= 0]


@dataclass
class Hits:
    """Flat hit list. `plane` < 0 are PSD layers (-2: layer 0, -1: layer 1)."""

    event: np.ndarray
    plane: np.ndarray
    pos: np.ndarray  # measured coordinate (mm)
    other: np.ndarray  # the coordinate along the strip (mm)
    signal: np.ndarray  # MIP units
    primary: np.ndarray
    #: the particle's d(measured coordinate)/dz (its incidence in the strips' plane, what spreads its
    #: charge over strips); 0 where unknown (single albedo clusters, noise)
    slope: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.slope is None:
            self.slope = np.zeros(len(self.event))

    @classmethod
    def concat(cls, parts: list[Hits]) -> Hits:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def select(self, mask: np.ndarray) -> Hits:
        return Hits(*(getattr(self, f.name)[mask] for f in fields(self)))


def measured_pair(plane: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(measured, other) coordinates for each plane id."""
    stk_x = (plane >= 0) & (plane % 2 == 0)
    psd_x = plane == -1  # PSD layer 1 measures x
    meas_x = stk_x | psd_x
    return np.where(meas_x, x, y), np.where(meas_x, y, x)


def tracks_to_hits(
    event: np.ndarray,
    x0: np.ndarray,
    y0: np.ndarray,
    z0: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    charge2: np.ndarray,
    signal_boost: np.ndarray,
    rng: np.random.Generator,
    primary: bool,
) -> Hits:
    """Straight tracks from (x0, y0, z0) with slopes (tx, ty): one hit per plane below z0."""
    dz = PLANE_Z[None, :] - z0[:, None]
    below = dz >= 0
    x = x0[:, None] + tx[:, None] * dz
    y = y0[:, None] + ty[:, None] * dz
    t, k = np.nonzero(below)
    plane = PLANE_ID[k]
    pos, other = measured_pair(plane, x[t, k], y[t, k])
    path = np.sqrt(1.0 + tx[t] ** 2 + ty[t] ** 2)
    sig = landau_signal(rng, charge2[t], path) * signal_boost[t]
    slope = measured_pair(plane, tx[t], ty[t])[0]
    return Hits(event[t], plane, pos, other, sig, np.full(len(t), primary), slope)


def primary_slopes(x_stk: np.ndarray, y_stk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The primary's (tx, ty) across the STK, from its (N, 12) positions in the first and last layers."""
    lever = geo.STK_LAYER_Z[-1] - geo.STK_LAYER_Z[0]
    return (x_stk[:, -1] - x_stk[:, 0]) / lever, (y_stk[:, -1] - y_stk[:, 0]) / lever


def primary_hits(
    rng: np.random.Generator,
    x_stk: np.ndarray,
    y_stk: np.ndarray,
    charge: int,
    cos_theta: np.ndarray,
    z_interaction: np.ndarray,
) -> Hits:
    """The primary's hits in the STK layers it reaches before (or at) its interaction."""
    reach = geo.STK_LAYER_Z[None, :] <= z_interaction[:, None]
    e, layer = np.nonzero(reach)
    pos, other = measured_pair(layer, x_stk[e, layer], y_stk[e, layer])
    sig = landau_signal(rng, np.full(len(e), charge**2), 1.0 / cos_theta[e])
    tx, ty = primary_slopes(x_stk, y_stk)
    return Hits(e, layer, pos, other, sig, np.ones(len(e), dtype=bool), measured_pair(layer, tx[e], ty[e])[0])


def secondaries(
    rng: np.random.Generator,
    particle: str,
    energy: np.ndarray,
    x_int: np.ndarray,
    y_int: np.ndarray,
    z_int: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    events: np.ndarray,
) -> Hits:
    """Tracks leaving an inelastic interaction: leading fragment(s), produced hadrons, slow fragments.

    Helium mostly breaks up into charge-1 fragments (wrong charge downstream); protons
    keep a charge-1 leading particle accompanied by collimated produced hadrons, which
    share clusters with it and fake higher charges.
    """
    m = len(events)
    if m == 0:
        return Hits(*(np.empty(0, dt) for dt in (int, int, float, float, float, bool)))
    e = energy[events]
    # produced charged hadrons: multiplicity grows with log E
    n_prod = rng.poisson(1.0 + 1.2 * np.log(np.maximum(e, 10.0) / 10.0))
    if particle == "helium":
        keeps_z2 = rng.random(m) < 0.35  # a 3He survives; otherwise two Z=1 fragments
        n_lead = np.where(keeps_z2, 1, 2)
        lead_z2 = np.where(keeps_z2, 4.0, 1.0)
    else:
        n_lead = np.ones(m, dtype=int)
        lead_z2 = np.ones(m)
    n_slow = rng.poisson(0.7, m)
    kinds = [(n_lead, "lead"), (n_prod, "prod"), (n_slow, "slow")]
    parts = []
    for counts, kind in kinds:
        src = np.repeat(np.arange(m), counts)
        k = len(src)
        if kind == "lead":
            z2 = lead_z2[src]
            e_sec = e[src] * rng.uniform(0.3, 0.8, k)
            pt = rng.exponential(0.15, k)  # Fermi motion / diffractive kick
            boost = np.ones(k)
        elif kind == "prod":
            z2 = np.ones(k)
            # Feynman scaling: dN/dx ~ 1/x, from ~1 GeV up to 30% of E (soft ones fly wide)
            x_min = np.minimum(1.0 / e[src], 0.3)
            e_sec = e[src] * x_min * (0.3 / x_min) ** rng.random(k)
            pt = rng.exponential(0.35, k)
            boost = np.ones(k)
        else:
            z2 = np.ones(k)
            e_sec = np.full(k, 0.3)
            pt = np.full(k, 0.3)
            boost = rng.uniform(3.0, 10.0, k)  # slow target fragments ionise heavily
        theta = np.clip(pt / np.maximum(e_sec, 0.05), 0.0, 1.2)
        phi = rng.uniform(0, 2 * np.pi, k)
        ev = events[src]
        parts.append(
            tracks_to_hits(
                ev,
                x_int[src],
                y_int[src],
                z_int[src],
                tx[ev] + np.tan(theta) * np.cos(phi),
                ty[ev] + np.tan(theta) * np.sin(phi),
                z2,
                boost,
                rng,
                primary=False,
            )
        )
    hits = Hits.concat(parts)
    # an interaction inside a layer still leaves that layer's primary hit; secondaries start below
    return hits.select(PLANE_Z[hits.plane + geo.PSD_N_LAYERS] > z_int[np.searchsorted(events, hits.event)])


def preshower_pairs(
    rng: np.random.Generator,
    x_stk: np.ndarray,
    y_stk: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    cos_theta: np.ndarray,
) -> Hits:
    """Electrons radiate in the tungsten: converted photons add e+e- pairs close to the track."""
    n = len(x_stk)
    parts = []
    # a hard photon from each plate, converting in the next plates (half of them hard enough)
    p_conv = 0.5 * (1.0 - np.exp(-7.0 / 9.0 * geo.STK_TUNGSTEN_X0 / cos_theta))
    for z_w in geo.STK_TUNGSTEN_Z:
        conv = np.flatnonzero(rng.random(n) < p_conv)
        src = np.repeat(conv, 2)
        k = len(src)
        # position of the electron at the plate: interpolate from the layer just above it
        above = int(np.searchsorted(geo.STK_LAYER_Z, z_w)) - 1
        x0 = x_stk[src, above] + tx[src] * (z_w - geo.STK_LAYER_Z[above])
        y0 = y_stk[src, above] + ty[src] * (z_w - geo.STK_LAYER_Z[above])
        ang = rng.normal(0.0, 0.004, (k, 2))
        parts.append(
            tracks_to_hits(
                src,
                x0,
                y0,
                np.full(k, z_w),
                tx[src] + ang[:, 0],
                ty[src] + ang[:, 1],
                np.ones(k),
                np.ones(k),
                rng,
                False,
            )
        )
    return Hits.concat(parts)


def backsplash_multiplicity(bgo_deposit_gev: np.ndarray) -> np.ndarray:
    """Mean number of albedo particles reaching the STK for a BGO deposit."""
    return BACKSPLASH_NORM * (np.maximum(bgo_deposit_gev, 0.0) / 10.0) ** BACKSPLASH_INDEX


def backsplash(
    rng: np.random.Generator,
    bgo_deposit_gev: np.ndarray,
    x_entry: np.ndarray,
    y_entry: np.ndarray,
    planes: np.ndarray,
    scale: float = 1.0,
    hadronic: bool = True,
) -> Hits:
    """Albedo hits: upward particles from the shower's entry point into the given planes.

    Most albedo is soft photons and electrons that leave one cluster each (single hits);
    in hadronic showers a fraction BACKSPLASH_CHARGED_FRACTION is charged hadrons that
    cross the STK upwards as straight tracks through successive layers until they range
    out (STK planes only; the PSD keeps single hits). Electromagnetic showers
    (`hadronic=False`) send back no hadrons.
    """
    n_per = rng.poisson(scale * backsplash_multiplicity(bgo_deposit_gev))
    ev = np.repeat(np.arange(len(n_per)), n_per)
    k = len(ev)
    charged = np.zeros(k, dtype=bool)
    if hadronic and np.all(planes >= 0) and BACKSPLASH_CHARGED_FRACTION > 0:
        charged = rng.random(k) < BACKSPLASH_CHARGED_FRACTION
    singles = _backsplash_singles(rng, ev[~charged], x_entry, y_entry, planes)
    if not charged.any():
        return singles
    return Hits.concat([singles, _backsplash_tracks(rng, ev[charged], x_entry, y_entry)])


def _albedo_cos(rng: np.random.Generator, k: int) -> np.ndarray:
    """cos of the angle to the upward vertical: uniform (BACKSPLASH_COSINE_LAW off) or cosine law."""
    if BACKSPLASH_COSINE_LAW:
        return np.sqrt(rng.uniform(0.08**2, 1.0, k))
    return rng.uniform(0.08, 1.0, k)


def _backsplash_singles(
    rng: np.random.Generator, ev: np.ndarray, x_entry: np.ndarray, y_entry: np.ndarray, planes: np.ndarray
) -> Hits:
    """One cluster per albedo particle, in a plane drawn with the depth weighting."""
    k = len(ev)
    z_planes = PLANE_Z[planes + geo.PSD_N_LAYERS]
    w = np.exp(-(geo.BGO_Z_TOP - z_planes) / BACKSPLASH_DEPTH_MM)
    plane = planes[rng.choice(len(planes), size=k, p=w / w.sum())]
    zp = PLANE_Z[plane + geo.PSD_N_LAYERS]
    cos_up = _albedo_cos(rng, k)
    r = (geo.BGO_Z_TOP - zp) * np.sqrt(1.0 - cos_up**2) / cos_up
    phi = rng.uniform(0, 2 * np.pi, k)
    x = x_entry[ev] + rng.normal(0, 20.0, k) + r * np.cos(phi)
    y = y_entry[ev] + rng.normal(0, 20.0, k) + r * np.sin(phi)
    pos, other = measured_pair(plane, x, y)
    sig = landau_signal(rng, np.ones(k), np.minimum(1.0 / cos_up, 4.0))
    slow = rng.random(k) < BACKSPLASH_SLOW_FRACTION
    sig = np.where(slow, sig * (2.0 + rng.exponential(4.0, k)), sig)
    return Hits(ev, plane, pos, other, sig, np.zeros(k, dtype=bool))


def _backsplash_tracks(
    rng: np.random.Generator, ev: np.ndarray, x_entry: np.ndarray, y_entry: np.ndarray
) -> Hits:
    """Charged albedo: straight upward tracks from near the shower entry, layer by layer until they stop.

    Directions follow a cosine law about the upward vertical (emission from the BGO top
    face); a particle crosses the next layer up with probability 1 - stop (slow, heavily
    ionising ones stop sooner).
    """
    k = len(ev)
    cos_up = _albedo_cos(rng, k)
    phi = rng.uniform(0, 2 * np.pi, k)
    tan_t = np.sqrt(1.0 - cos_up**2) / cos_up
    tx, ty = tan_t * np.cos(phi), tan_t * np.sin(phi)  # displacement per mm travelled upward
    x0 = x_entry[ev] + rng.normal(0, BACKSPLASH_TRACK_SPREAD_MM, k)
    y0 = y_entry[ev] + rng.normal(0, BACKSPLASH_TRACK_SPREAD_MM, k)
    slow = rng.random(k) < BACKSPLASH_TRACK_SLOW_FRACTION
    stop = np.where(slow, BACKSPLASH_STOP_SLOW, BACKSPLASH_STOP_FAST)
    n_layers = np.minimum(rng.geometric(stop), geo.STK_N_LAYERS)  # layers crossed, from the bottom
    from_bottom = np.arange(geo.STK_N_LAYERS)[::-1]  # layer 11 is the first one reached
    t, layer = np.nonzero(from_bottom[None, :] < n_layers[:, None])
    height = geo.BGO_Z_TOP - geo.STK_LAYER_Z[layer]
    x = x0[t] + tx[t] * height
    y = y0[t] + ty[t] * height
    pos, other = measured_pair(layer, x, y)
    boost = np.where(slow, 2.0 + rng.exponential(4.0, k), 1.0)
    sig = landau_signal(rng, np.ones(len(t)), np.minimum(1.0 / cos_up[t], 4.0)) * boost[t]
    slope = -measured_pair(layer, tx[t], ty[t])[0]  # upward: d/dz is minus the displacement per mm up
    return Hits(ev[t], layer, pos, other, sig, np.zeros(len(t), dtype=bool), slope)


def noise_clusters(rng: np.random.Generator, n: int) -> Hits:
    """Electronic-noise clusters, uniform over the STK, just above threshold."""
    counts = rng.poisson(NOISE_CLUSTERS_PER_EVENT, n)
    ev = np.repeat(np.arange(n), counts)
    k = len(ev)
    return Hits(
        ev,
        rng.integers(0, geo.STK_N_LAYERS, k),
        rng.uniform(-geo.STK_HALF_WIDTH, geo.STK_HALF_WIDTH, k),
        rng.uniform(-geo.STK_HALF_WIDTH, geo.STK_HALF_WIDTH, k),
        0.15 + rng.exponential(0.1, k),
        np.zeros(k, dtype=bool),
    )


def digitize(rng: np.random.Generator, hits: Hits, signal_scale: float = 1.0) -> dict[str, np.ndarray]:
    """STK hits -> clusters: resolution, efficiency, active area, merging, readout channel.

    Returns flat arrays sorted by (event, layer, position): event, layer, half, channel,
    pos, signal, is_primary.
    """
    h = hits.select(hits.plane >= 0)
    pos = h.pos + rng.normal(0.0, geo.STK_RESOLUTION, len(h.pos))
    keep = rng.random(len(pos)) < geo.STK_HIT_EFFICIENCY
    keep &= (np.abs(pos) < geo.STK_HALF_WIDTH) & (np.abs(h.other) < geo.STK_HALF_WIDTH)
    h = h.select(keep)
    pos = pos[keep]
    order = np.lexsort((pos, h.plane, h.event))
    ev, layer, pos = h.event[order], h.plane[order], pos[order]
    sig, other, prim = h.signal[order], h.other[order], h.primary[order]
    new = np.ones(len(ev), dtype=bool)
    new[1:] = (ev[1:] != ev[:-1]) | (layer[1:] != layer[:-1]) | (np.diff(pos) > MERGE_DISTANCE_MM)
    starts = np.flatnonzero(new)
    ssum = np.add.reduceat(sig, starts) if len(starts) else sig[:0]
    cpos = np.add.reduceat(sig * pos, starts) / ssum if len(starts) else pos[:0]
    cother = np.add.reduceat(sig * other, starts) / ssum if len(starts) else other[:0]
    cprim = np.maximum.reduceat(prim.astype(np.int8), starts).astype(bool) if len(starts) else prim[:0]
    cpos = cpos.astype(np.float32)  # as stored; the channel must agree with the stored position
    channel = np.clip(
        np.floor((cpos.astype(np.float64) + geo.STK_HALF_WIDTH) / geo.STK_READOUT_PITCH),
        0,
        geo.STK_CHANNELS_PER_HALF - 1,
    )
    return {
        "event": ev[starts],
        "layer": layer[starts].astype(np.int8),
        "half": (cother >= 0).astype(np.int8),
        "channel": channel.astype(np.int16),
        "pos": cpos,
        "signal": (ssum * signal_scale).astype(np.float32),
        "is_primary": cprim,
    }
