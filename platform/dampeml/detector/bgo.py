"""BGO calorimeter response: electromagnetic and hadronic showers, MIP tracks, saturation.

Each event's shower is a sum of K components. A component has a longitudinal gamma
profile (Longo's parametrisation) integrated analytically over the layers, and a
projected lateral profile (Laplace core + halo) integrated analytically over the bars,
so the whole (N, K, 14, 22) energy tensor is a few broadcast array operations.

- Electrons: one electromagnetic component starting at the BGO top (the STK adds ~1 X0
  of pre-shower, folded into the start depth).
- Protons and helium: a MIP track down to an exponentially distributed first-interaction
  depth (lambda_I = 22.8 cm, so ~20% cross the BGO without showering). From there, a
  fluctuating electromagnetic fraction (Groom's f_h = (E/E0)^(m-1) with Beta-distributed
  event-to-event spread) is split over several pi0 sub-showers that start at successive
  generations of the cascade, each with its own small angle and offset (irregular
  shapes), plus a broad, deep hadronic component whose visible share is h/e ~ 0.6.
- Version 4: GFlash's shower-to-shower fluctuations of every EM profile, and
  a hadronic component that widens from the interaction point with a halo share varying by layer.
- Version 5: the hadronic core's energy per layer brought by few hadrons past one interaction length.
- Readout: light-yield spread per bar, electronic noise, zero suppression, and the
  saturation of the hottest bars near 4.4 TeV per bar, which matters above ~100 TeV: an
  overdriven bar reads *less* the more it is overdriven (fold-back), so the core of a PeV
  shower looks hollow, which is what spoils the standard shower axis there.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammainc

from dampeml import geometry as geo
from dampeml.detector.physics import landau_signal, laplace_cdf

N_SUBSHOWERS = 5
HADRONIC_VISIBLE = 0.5  # h/e of BGO
GROOM_E0_GEV, GROOM_M = 1.0, 0.85
NOISE_MEV = 0.3
ZERO_SUPPRESSION_MEV = 1.0
LIGHT_YIELD_SPREAD = 0.02
#: Fold-back of an overdriven bar: past the readout's range the front-end (charge preamplifier +
#: shaper sampled at a fixed hold time) saturates and recovers late, so the held sample *falls* as
#: the deposit grows: reading = S / (1 + k (E/S - 1)) for E > S. Calibrated on the paper's Table 2
#: at PeV (docs/simulation.md, calibration log); k = 0 is a hard clip.
SATURATION_FOLDBACK = 1.0
#: Inelastic cross-section on Bi/Ge/O relative to the proton's: for heavy targets helium's
#: excess is smaller than on the light nuclei before the BGO ((A_p^1/3 + A_t^1/3)^2 scaling).
BGO_CROSS_SECTION_RATIO = {"proton": 1.0, "helium": 1.35, "electron": 1.0}

_T_X0_PER_LAYER = geo.BGO_BAR_WIDTH / geo.BGO_X0  # 2.23 X0 per layer at normal incidence
#: X0 of the tracker (its tungsten, silicon and supports: ~0.96 in `geometry`) an electron crosses
#: before the BGO top, where its shower starts
STK_PRESHOWER_X0 = 0.9
_LAMBDA_IN_X0 = geo.BGO_LAMBDA_I / geo.BGO_X0
_BAR_LO = geo.BGO_BAR_CENTRES - geo.BGO_BAR_WIDTH / 2
_BAR_HI = geo.BGO_BAR_CENTRES + geo.BGO_BAR_WIDTH / 2
#: Version 3: a bar collects what its cell receives (the bar and half of each 2.5 mm gap beside it):
#: shower particles cross the thin gaps and deposit in the bars around them.
_CELL_LO = geo.BGO_BAR_CENTRES - geo.BGO_BAR_PITCH / 2
_CELL_HI = geo.BGO_BAR_CENTRES + geo.BGO_BAR_PITCH / 2
#: Effective atomic number of BGO in GFlash's parametrisation (Bi4Ge3O12, weighted by Z^2 / A)
BGO_Z_EFF = 62.5
#: The hadronic component's lateral profile: a core and a halo (version 3: the core 18 mm + 20 mm per
#: interaction length past the start, the halo 60 + 30 mm, the halo's share fixed). Version 4: the core
#: grows from the interaction point over HADRON_CORE_REACH interaction lengths (from HADRON_CORE_FLOOR of
#: its width), and the halo's share is Beta-distributed about HADRON_HALO_SHARE with this concentration.
#: Chosen, not fitted (a trial and a scan against DAMPE's simulation: docs/simulation.md, "Version 4").
HADRON_HALO_SHARE = 0.35
HADRON_CORE_REACH = 1.0
HADRON_CORE_FLOOR = 0.05
HADRON_HALO_CONCENTRATION = 3.0
#: The shower-to-shower spread of the EM fraction f_em: Beta about Groom's mean with this concentration
#: (every version; a study parameter of benchmarks/bench_dampe_mc_leaves.py).
HADRON_EM_CONCENTRATION = 6.0
#: Study, off (0) in every version: version 4's pi0 generations drawn as Groom's cascade (`pi0_cascade`)
#: with this concentration (benchmarks/bench_dampe_mc_leaves.py --cascade-concentration; docs/simulation.md)
HADRON_CASCADE_CONCENTRATION = 0.0
#: Mean depth (interaction lengths) between successive pi0 generations (every version; a study parameter)
HADRON_GENERATION_GAP = 0.5
#: Study, off in every version: version 4's hadronic component with Bock et al.'s energy-dependent profile
HADRON_BOCK_PROFILE = False
#: Version 5: the visible energy the hadronic component's hadrons bring into a layer (its core) comes
#: from few of them, each worth about this much (MeV): Gamma-distributed about the profile's with shape
#: (energy / this), from HADRON_CORE_REACH past the interaction point on (before it the first
#: secondaries, many, cross as MIPs), while the halo's many soft particles follow the profile. Fitted to
#: DAMPE's simulation (docs/simulation.md, "Version 5"); a study value in bench_dampe_mc_leaves.py
HADRON_CORE_CARRIER_MEV = 5000.0
#: Study, off (0) in every version: the width of ln(the hadronic profile's depth scale), drawn per shower
HADRON_DEPTH_SPREAD = 0.0
#: GFlash's fluctuation widths diverge for the softest showers: ln(E / E_c) held at least this
GFLASH_LN_Y_MIN = 3.0


def layer_edges_x0(cos_theta: np.ndarray) -> np.ndarray:
    """(N, 15) depth along the path (X0) at each layer boundary: the axis crosses layers obliquely."""
    return np.arange(geo.BGO_N_LAYERS + 1)[None, :] * _T_X0_PER_LAYER / cos_theta[:, None]


def em_longitudinal(
    e_mev: np.ndarray,
    t_start: np.ndarray,
    edges: np.ndarray,
    rng: np.random.Generator,
    photon: bool,
    fluctuate: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 14) energy per layer of EM (sub-)showers of energy e_mev (N, K) starting at t_start, and
    (N, K) each one's depth of maximum past its start (X0). `fluctuate` (simulation version 4): the
    profile's shape varies from shower to shower as GFlash's does (`gflash_fluctuations`)."""
    y = np.maximum(e_mev / geo.BGO_CRITICAL_ENERGY_MEV, 1.5)
    tmax = np.log(y) + (0.5 if photon else -0.5)
    z_b, z_a = rng.standard_normal(e_mev.shape), rng.standard_normal(e_mev.shape)
    if fluctuate:
        alpha = np.maximum(0.5 * tmax + 1.0, 1.05)  # version 3's mean shape: b = 0.5
        t_peak, a = gflash_fluctuations(y, np.maximum(tmax, 0.5), alpha, z_b, z_a)
        b = (a - 1.0) / t_peak
    else:
        b = 0.5 * (1.0 + 0.03 * z_b)
        a = np.maximum(b * tmax + 1.0, 1.05) * (1.0 + 0.03 * z_a)
        t_peak = np.maximum(tmax, 0.5)
    tau = np.clip(edges[:, None, :] - t_start[..., None], 0.0, None)
    cdf = gammainc(a[..., None], b[..., None] * tau)
    return e_mev[..., None] * np.diff(cdf, axis=-1), t_peak


def gflash_fluctuations(
    y: np.ndarray, t_peak: np.ndarray, alpha: np.ndarray, z1: np.ndarray, z2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """GFlash's shower-to-shower fluctuation of a longitudinal profile (Grindhammer and Peters, as in
    Geant4's GVFlashHomoShowerTuning): ln T and ln alpha normal about the profile's own, with widths
    1/(-1.4 + 1.26 ln y) and 1/(-0.58 + 0.86 ln y) and correlation 0.705 - 0.023 ln y (y = E / E_c),
    from two standard normals each. Below y = e^3 (0.2 GeV) the widths diverge: held there. Returns
    the fluctuated (T, alpha); alpha at least 1.05, as the profile's own."""
    ln_y = np.maximum(np.log(y), GFLASH_LN_Y_MIN)
    sigma_t = 1.0 / (-1.4 + 1.26 * ln_y)
    sigma_a = 1.0 / (-0.58 + 0.86 * ln_y)
    rho = np.clip(0.705 - 0.023 * ln_y, -1.0, 1.0)
    t_out = t_peak * np.exp(sigma_t * z1)
    a_out = alpha * np.exp(sigma_a * (rho * z1 + np.sqrt(1.0 - rho**2) * z2))
    return t_out, np.maximum(a_out, 1.05)


def pi0_cascade(
    rng: np.random.Generator, energy_gev: np.ndarray, concentration: float
) -> tuple[np.ndarray, np.ndarray]:
    """(f_em (N,), the generations' shares of it (N, N_SUBSHOWERS)) of Groom's cascade: each generation
    turns a share g of the energy still hadronic into pi0s, g Beta-distributed about the same mean at
    every energy, and a shower of energy E has ln(E / E0) / ln(M) generations (the last one partial; M
    sets N_SUBSHOWERS generations at 1 PeV), so that the mean f_h = (1 - g)^n = (E / E0)^(m - 1) is
    Groom's. A generation that takes much leaves little to the later, deeper ones."""
    n = len(energy_gev)
    per_generation = np.log(1e6 / GROOM_E0_GEV) / N_SUBSHOWERS  # ln M
    g_mean = 1.0 - np.exp((GROOM_M - 1.0) * per_generation)
    generations = np.clip(
        np.log(np.maximum(energy_gev, GROOM_E0_GEV) / GROOM_E0_GEV) / per_generation, 1.0, None
    )
    active = np.clip(generations[:, None] - np.arange(N_SUBSHOWERS)[None, :], 0.0, 1.0)
    g = rng.beta(concentration * g_mean, concentration * (1.0 - g_mean), (n, N_SUBSHOWERS)) * active
    still_hadronic = np.concatenate([np.ones((n, 1)), np.cumprod(1.0 - g, axis=1)[:, :-1]], axis=1)
    pi0 = still_hadronic * g
    f_em = pi0.sum(axis=1)
    return f_em, pi0 / np.maximum(f_em, 1e-12)[:, None]


def hadronic_longitudinal(
    e_mev: np.ndarray,
    t_start: np.ndarray,
    edges: np.ndarray,
    energy_gev: np.ndarray | None = None,
    stretch: np.ndarray | float = 1.0,
) -> np.ndarray:
    """(N, 14) energy per layer of the purely hadronic component: gamma profile in lambda_I, of fixed
    shape (1.8, 0.55 lambda); given the primaries' energies (the BOCK study), Bock et al.'s hadronic part
    instead, shape 0.6165 + 0.3183 lg E and rate 0.9099 - 0.0237 lg E per lambda (E in GeV). `stretch` (N,)
    multiplies each profile's depth scale (the HADRON_DEPTH_SPREAD study)."""
    tau = np.clip(edges - t_start[:, None], 0.0, None) / _LAMBDA_IN_X0 / np.reshape(stretch, (-1, 1))
    if energy_gev is None:
        cdf = gammainc(1.8, tau / 0.55)
    else:
        lg = np.log10(np.maximum(energy_gev, 1.0))[:, None]
        cdf = gammainc(0.6165 + 0.3183 * lg, (0.9099 - 0.0237 * lg) * tau)
    return e_mev[:, None] * np.diff(cdf, axis=-1)


def lateral_fractions(
    centre: np.ndarray, core: np.ndarray, halo: np.ndarray, f_halo: np.ndarray
) -> np.ndarray:
    """(..., 22) share of a layer's energy in each bar for a projected core+halo profile."""
    c = centre[..., None]
    frac_core = laplace_cdf(_BAR_HI - c, core[..., None]) - laplace_cdf(_BAR_LO - c, core[..., None])
    frac_halo = laplace_cdf(_BAR_HI - c, halo[..., None]) - laplace_cdf(_BAR_LO - c, halo[..., None])
    return (1.0 - f_halo[..., None]) * frac_core + f_halo[..., None] * frac_halo


def gflash_radial(e_gev: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GFlash's radial profile of an EM shower in a homogeneous medium, in Moliere radii.

    f(r) = p 2 r Rc^2 / (r^2 + Rc^2)^2 + (1 - p) 2 r Rt^2 / (r^2 + Rt^2)^2 at the depth tau = t / T
    (T: the shower maximum), with Grindhammer and Peters' coefficients for the medium's Z (as in
    Geant4's GVFlashHomoShowerTuning). Returns (Rc, Rt, p), each shaped like tau.
    """
    z, ln_e = BGO_Z_EFF, np.log(np.maximum(e_gev, 1e-3))
    tau = np.clip(tau, 0.0, 10.0)
    core = (0.0251 + 0.00319 * ln_e) + (0.1162 - 0.000381 * z) * tau
    k4 = 0.3585 + 0.0421 * ln_e
    tail = (0.659 - 0.00309 * z) * (np.exp(-2.59 * (tau - 0.645)) + np.exp(k4 * (tau - 0.645)))
    p2, p3 = 0.401 + 0.00187 * z, 1.313 - 0.0686 * ln_e
    u = (p2 - tau) / p3
    core_share = np.clip((2.632 - 0.00094 * z) * np.exp(u - np.exp(u)), 0.0, 1.0)
    return core, tail, core_share


def _projected_cdf(x: np.ndarray, r: np.ndarray) -> np.ndarray:
    """CDF along one axis of the 2D density R^2 / (pi (r^2 + R^2)^2): 1/2 (1 + x / sqrt(x^2 + R^2))."""
    return 0.5 * (1.0 + x / np.sqrt(x * x + r * r))


def gflash_fractions(centre: np.ndarray, e_gev: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """(..., 22) share of a layer's EM energy in each bar's cell for GFlash's profile at depth tau."""
    core, tail, share = (v[..., None] * (geo.BGO_MOLIERE_RADIUS if i < 2 else 1.0)
                         for i, v in enumerate(gflash_radial(e_gev, tau)))  # fmt: skip
    hi, lo = _CELL_HI - centre[..., None], _CELL_LO - centre[..., None]
    return share * (_projected_cdf(hi, core) - _projected_cdf(lo, core)) + (1.0 - share) * (
        _projected_cdf(hi, tail) - _projected_cdf(lo, tail)
    )


def _em_depth_over_max(t_peak: np.ndarray, t_start: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(..., 14) depth of each layer's middle past the (sub-)shower's start, in units of its maximum."""
    middle = 0.5 * (edges[..., :-1] + edges[..., 1:])
    return np.clip(middle - t_start[..., None], 0.0, None) / t_peak[..., None]


def _measured(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pick, per layer, the coordinate the layer's bars measure."""
    return np.where(geo.BGO_LAYER_MEASURES_X[None, :], x, y)


def bar_index(coord: np.ndarray) -> np.ndarray:
    """Bar containing a coordinate (-1 in a gap or outside)."""
    i = np.floor((coord + geo.BGO_N_BARS * geo.BGO_BAR_PITCH / 2) / geo.BGO_BAR_PITCH).astype(int)
    inside = (i >= 0) & (i < geo.BGO_N_BARS)
    ic = np.clip(i, 0, geo.BGO_N_BARS - 1)
    in_bar = np.abs(coord - geo.BGO_BAR_CENTRES[ic]) <= geo.BGO_BAR_WIDTH / 2
    return np.where(inside & in_bar, ic, -1)


def simulate_bgo(
    rng: np.random.Generator,
    particle: str,
    charge: int,
    energy_gev: np.ndarray,
    axis_x: np.ndarray,
    axis_y: np.ndarray,
    tx: np.ndarray,
    ty: np.ndarray,
    inelastic_before: np.ndarray,
    gflash: bool = False,
    fluctuate: bool = False,
    carriers: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energy per bar (N, 14, 22) in MeV, before readout effects; also the first-interaction depth.

    axis_x/axis_y: (N, 14) positions of the incoming trajectory at the layer centres, in
    the BGO's own frame (the caller applies any misalignment). `gflash` (simulation version 3):
    EM (sub-)showers with GFlash's radial profile, collected over each bar's cell; `fluctuate`
    (version 4): with GFlash's shower-to-shower fluctuations of the longitudinal profile, and a hadronic
    component whose core grows from the interaction point and whose halo's share fluctuates; `carriers`
    (version 5): the hadronic core's energy per layer brought by few hadrons (HADRON_CORE_CARRIER_MEV).
    Returns (energy, t0 in X0 along the path (inf: no shower), interaction z in mm).
    """
    n = len(energy_gev)
    cos_t = 1.0 / np.sqrt(1.0 + tx**2 + ty**2)
    edges = layer_edges_x0(cos_t)
    e_mev = energy_gev * 1e3
    axis = _measured(axis_x, axis_y)  # (N, 14)
    depth_mm = (geo.BGO_LAYER_Z - geo.BGO_LAYER_Z[0])[None, :] / cos_t[:, None]  # along the path
    out = np.zeros((n, geo.BGO_N_LAYERS, geo.BGO_N_BARS))
    rows = np.arange(n)[:, None]
    layers = np.arange(geo.BGO_N_LAYERS)[None, :]

    if particle == "electron":
        t0 = np.full(n, -STK_PRESHOWER_X0)
        e_layer, t_peak = em_longitudinal(e_mev[:, None], t0[:, None], edges, rng, False, fluctuate)
        e_layer = e_layer[:, 0]
        if gflash:
            tau = _em_depth_over_max(t_peak[:, 0], t0, edges)
            out += e_layer[..., None] * gflash_fractions(axis, energy_gev[:, None], tau)
            return out, t0, np.full(n, geo.BGO_Z_TOP)
        t_rel = np.clip((edges[:, :-1] - t0[:, None]) / 10.0, 0.0, 3.0)
        core = geo.BGO_MOLIERE_RADIUS * (0.22 + 0.06 * t_rel)
        halo = geo.BGO_MOLIERE_RADIUS * (0.7 + 0.2 * t_rel)
        f_halo = 0.12 + 0.06 * t_rel
        out += e_layer[..., None] * lateral_fractions(axis, core, halo, f_halo)
        return out, t0, np.full(n, geo.BGO_Z_TOP)

    # hadrons: first interaction depth (path length, X0); inelastic-before-BGO showers start at once
    t0 = rng.exponential(_LAMBDA_IN_X0 / BGO_CROSS_SECTION_RATIO[particle], n)
    t0 = np.where(inelastic_before, rng.exponential(0.15 * _LAMBDA_IN_X0, n), t0)
    showers = t0 < edges[:, -1]
    # MIP track down to the interaction point (fraction of the layer crossed before t0)
    crossed = np.clip((t0[:, None] - edges[:, :-1]) / np.diff(edges, axis=1), 0.0, 1.0)
    mip = landau_signal(rng, np.full((n, geo.BGO_N_LAYERS), charge**2), 1.0 / cos_t[:, None], 0.05)
    bars = bar_index(axis)
    mip_e = geo.BGO_MIP_MEV * mip * crossed * (bars >= 0)
    np.add.at(
        out,
        (np.broadcast_to(rows, bars.shape), np.broadcast_to(layers, bars.shape), np.clip(bars, 0, None)),
        mip_e,
    )

    # electromagnetic fraction with event-to-event fluctuations
    f_h_mean = np.clip((np.maximum(energy_gev, 1.0) / GROOM_E0_GEV) ** (GROOM_M - 1.0), 0.05, 0.95)
    conc = HADRON_EM_CONCENTRATION
    f_em = rng.beta(conc * (1 - f_h_mean), conc * f_h_mean)
    # pi0 sub-showers: Dirichlet split, later generations softer, starting deeper
    w = np.sort(rng.dirichlet(np.full(N_SUBSHOWERS, 1.2), n), axis=1)[:, ::-1]
    gaps = rng.exponential(HADRON_GENERATION_GAP * _LAMBDA_IN_X0, (n, N_SUBSHOWERS))
    gaps[:, 0] = rng.exponential(0.5, n)
    if fluctuate and HADRON_CASCADE_CONCENTRATION:  # the study replaces f_em and w, drawn above all the same
        f_em, w = pi0_cascade(rng, energy_gev, HADRON_CASCADE_CONCENTRATION)
    t_sub = t0[:, None] + np.cumsum(gaps, axis=1)
    e_sub = e_mev[:, None] * f_em[:, None] * w
    e_long, t_peak = em_longitudinal(e_sub, t_sub, edges, rng, True, fluctuate)  # (N, K, 14)
    # sub-shower directions: transverse momentum ~0.35 GeV over the sub-shower energy
    pt = rng.exponential(0.35, (n, N_SUBSHOWERS, 2))
    sign = rng.choice([-1.0, 1.0], (n, N_SUBSHOWERS, 2))
    ang = sign * pt / np.maximum(e_sub[..., None] / 1e3, 0.5)
    ang = np.clip(ang, -0.5, 0.5)
    start_mm = t_sub * geo.BGO_X0 * cos_t[:, None]  # vertical depth of each start
    dz = np.clip(depth_mm[:, None, :] * cos_t[:, None, None] - start_mm[..., None], 0.0, None)
    off_x = ang[..., 0:1] * dz
    off_y = ang[..., 1:2] * dz
    off = np.where(geo.BGO_LAYER_MEASURES_X[None, None, :], off_x, off_y)
    if gflash:
        tau = _em_depth_over_max(t_peak, t_sub, edges[:, None, :])
        lat = gflash_fractions(axis[:, None, :] + off, e_sub[..., None] / 1e3, tau)
    else:
        t_rel = np.clip((edges[:, None, :-1] - t_sub[..., None]) / 10.0, 0.0, 3.0)
        core = geo.BGO_MOLIERE_RADIUS * (0.25 + 0.08 * t_rel)
        halo = geo.BGO_MOLIERE_RADIUS * (0.8 + 0.25 * t_rel)
        f_halo = 0.15 + 0.08 * t_rel
        lat = lateral_fractions(axis[:, None, :] + off, core, halo, f_halo)  # (N, K, 14, 22)
    out += np.einsum("nkl,nklb->nlb", e_long, lat)
    # the hadronic component: deep, broad, partly invisible
    e_had = e_mev * (1.0 - f_em) * HADRONIC_VISIBLE * rng.uniform(0.8, 1.2, n)
    spread = HADRON_DEPTH_SPREAD if fluctuate else 0.0
    stretch = np.exp(spread * rng.standard_normal(n) - spread**2 / 2) if spread else 1.0
    h_long = hadronic_longitudinal(
        e_had, t0, edges, energy_gev if fluctuate and HADRON_BOCK_PROFILE else None, stretch
    )
    h_core = h_long
    if carriers:  # beyond HADRON_CORE_REACH, where the secondaries have interacted; before it many cross
        eps = HADRON_CORE_CARRIER_MEV
        few = 0.5 * (edges[:, :-1] + edges[:, 1:]) - t0[:, None] > HADRON_CORE_REACH * _LAMBDA_IN_X0
        h_core = np.where(few & (h_long > 0), rng.gamma(np.maximum(h_long, 1e-9) / eps, eps), h_long)
    h_rel = np.clip((edges[:, :-1] - t0[:, None]) / _LAMBDA_IN_X0, 0.0, 2.0)
    core_w, halo_w = 18.0 + 20.0 * h_rel, 60.0 + 30.0 * h_rel
    if fluctuate:
        # version 4: the secondaries leave the interaction point, so the core is narrow there and widens
        # over HADRON_CORE_REACH; the halo's share (nuclear de-excitation photons, neutrons, slow
        # fragments: few particles per layer) varies from layer to layer
        middle = 0.5 * (edges[:, :-1] + edges[:, 1:]) - t0[:, None]
        core_w = core_w * np.clip(middle / (HADRON_CORE_REACH * _LAMBDA_IN_X0), HADRON_CORE_FLOOR, 1.0)
        k = HADRON_HALO_CONCENTRATION
        f_halo = rng.beta(k * HADRON_HALO_SHARE, k * (1.0 - HADRON_HALO_SHARE), h_rel.shape)
    else:
        f_halo = np.full_like(h_rel, HADRON_HALO_SHARE)
    if carriers:  # version 5: the core's energy fluctuates, the halo's follows the profile
        total = (1.0 - f_halo) * h_core + f_halo * h_long
        f_halo = np.divide(f_halo * h_long, total, out=np.zeros_like(total), where=total > 0)
        h_long = total
    out += h_long[..., None] * lateral_fractions(axis, core_w, halo_w, f_halo)
    z_int = np.where(showers, geo.BGO_Z_TOP + t0 * geo.BGO_X0 * cos_t, np.inf)
    return out, t0, z_int


def saturate(e: np.ndarray, foldback: float = SATURATION_FOLDBACK) -> np.ndarray:
    """What an overdriven bar reads: e below the range, then falling back past it (SATURATION_FOLDBACK)."""
    s = geo.BGO_BAR_SATURATION_MEV
    over = np.clip(e / s - 1.0, 0.0, None)
    return np.where(e > s, s / (1.0 + foldback * over), e)


def readout(rng: np.random.Generator, energy: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Light-yield spread, noise, zero suppression and saturation (with fold-back) of the hottest bars."""
    e = energy * scale * (1.0 + LIGHT_YIELD_SPREAD * rng.standard_normal(energy.shape))
    e = e + NOISE_MEV * rng.standard_normal(energy.shape)
    e = np.where(e > ZERO_SUPPRESSION_MEV, e, 0.0)
    return saturate(e).astype(np.float32)
