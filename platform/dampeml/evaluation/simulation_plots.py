"""Validation of the fast simulation: physics observables (pure numpy) and the `sim-plots` figures.

The analysis functions are shared by the physics tests, the validation plots and the
physics report, so the numbers a test asserts on are the numbers a plot shows. They
take the dict of branches returned by `dampeml.io.root_reader.read_events` and work on
whole files at once (no per-event Python loops).

Conventions: energies in MeV as in the files (plots show GeV), positions in mm, z
downward. A *track* is an (N, 4) array (x_top, y_top, x_bot, y_bot) at geometry.Z_TOP /
Z_BOT, the same four numbers the BGO-direction network predicts, so every function
that takes the true track also takes a reconstructed one.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np

from dampeml import geometry as geo
from dampeml.errors import InputError
from dampeml.features.shower_axis import SHOWER_START_FRACTION, SHOWER_START_MIP, shower_start_layer
from dampeml.features.tracks import cos_theta, truth_track
from dampeml.io.root_reader import inspect_file, read_validated
from dampeml.io.schema import PARTICLE_OF_PDG

#: Rule for abnormal STK hits on a track: a hit whose signal exceeds this multiple of the
#: median signal of the track's hits is dropped before averaging (delta rays, overlapping
#: backsplash or secondaries). Landau fluctuations of a single particle reach 2x the
#: median in ~0.2% of hits, so a clean track loses almost nothing.
ABNORMAL_SIGNAL_FACTOR = 2.0
#: Non-primary STK clusters farther than this from the true track count as backsplash.
BACKSPLASH_MIN_DISTANCE_MM = 5.0

PARTICLE_COLOURS = {"electron": "tab:blue", "proton": "tab:red", "helium": "tab:green"}  # flight: grey


# --------------------------------------------------------------------------- BGO observables


def deposited_energy(bgo_energy: np.ndarray) -> np.ndarray:
    """(N,) total BGO deposit in MeV: the energy estimator everything else is binned in."""
    return np.asarray(bgo_energy, dtype=np.float64).reshape(len(bgo_energy), -1).sum(axis=1)


def layer_energy(bgo_energy: np.ndarray) -> np.ndarray:
    """(N, 14) energy per layer in MeV."""
    return np.asarray(bgo_energy, dtype=np.float64).sum(axis=2)


def longitudinal_profile(bgo_energy: np.ndarray) -> np.ndarray:
    """(N, 14) share of the deposit in each layer: where the shower starts and peaks (0 if empty)."""
    el = layer_energy(bgo_energy)
    total = el.sum(axis=1, keepdims=True)
    return np.divide(el, total, out=np.zeros_like(el), where=total > 0)


def lateral_rms(bgo_energy: np.ndarray) -> np.ndarray:
    """(N, 14) energy-weighted RMS (mm) of bar centres around each layer's centroid; NaN if empty.

    The width separates narrow electromagnetic showers from broad hadronic ones.
    """
    e = np.asarray(bgo_energy, dtype=np.float64)
    c = geo.BGO_BAR_CENTRES[None, None, :]
    w = e.sum(axis=2)
    safe = np.where(w > 0, w, 1.0)
    mean = (e * c).sum(axis=2) / safe
    var = (e * (c - mean[..., None]) ** 2).sum(axis=2) / safe
    return np.where(w > 0, np.sqrt(np.maximum(var, 0.0)), np.nan)


def shower_width(bgo_energy: np.ndarray) -> np.ndarray:
    """(N,) layer-energy-weighted mean of the lateral RMS (mm): one width per event."""
    rms = lateral_rms(bgo_energy)
    el = layer_energy(bgo_energy)
    total = el.sum(axis=1)
    w = np.nansum(np.nan_to_num(rms) * el, axis=1)
    return np.divide(w, total, out=np.full(len(total), np.nan), where=total > 0)


# --------------------------------------------------------------------------- tracks


def track_xy(track: np.ndarray, z: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """(N, len(z)) x and y of a straight track at the planes z (extrapolated beyond the STK)."""
    z = np.atleast_1d(np.asarray(z, dtype=np.float64))
    f = (z[None, :] - geo.Z_TOP) / (geo.Z_BOT - geo.Z_TOP)
    x = track[:, 0:1] + (track[:, 2:3] - track[:, 0:1]) * f
    y = track[:, 1:2] + (track[:, 3:4] - track[:, 1:2]) * f
    return x, y


def track_positions(track: np.ndarray) -> np.ndarray:
    """(N, 12) the coordinate each STK layer measures, where the track crosses it."""
    x, y = track_xy(track, geo.STK_LAYER_Z)
    return np.where(geo.STK_LAYER_MEASURES_X[None, :], x, y)


def truth_track_positions(events: dict) -> np.ndarray:
    """(N, 12) measured coordinate of the true straight track at each STK layer (MC only)."""
    return track_positions(truth_track(events))


def _cos_from_positions(track_pos: np.ndarray) -> np.ndarray:
    """Track slope from its (N, 12) layer positions: first and last x layers, first and last y."""
    tx = (track_pos[:, 10] - track_pos[:, 0]) / (geo.STK_LAYER_Z[10] - geo.STK_LAYER_Z[0])
    ty = (track_pos[:, 11] - track_pos[:, 1]) / (geo.STK_LAYER_Z[11] - geo.STK_LAYER_Z[1])
    return 1.0 / np.sqrt(1.0 + tx**2 + ty**2)


# --------------------------------------------------------------------------- STK


def _flat_stk(events: dict, names: Iterable[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Event index of every cluster and the flat numpy arrays of the given STK branches."""
    counts = ak.to_numpy(ak.num(events["stk_layer"], axis=1))
    ev = np.repeat(np.arange(len(counts)), counts)
    return ev, {k: ak.to_numpy(ak.flatten(events[k])) for k in names}


def stk_signal_along(events: dict, track_pos: np.ndarray, window_mm: float = 0.3) -> np.ndarray:
    """(N, 12) signal of the hit closest to the track in each layer, within the window; NaN if none.

    At most one hit per layer, as the chain's hit assignment (docs/reconstruction.md).
    """
    n = len(track_pos)
    ev, f = _flat_stk(events, ("stk_layer", "stk_pos", "stk_signal"))
    layer = f["stk_layer"].astype(np.int64)
    d = np.abs(f["stk_pos"].astype(np.float64) - track_pos[ev, layer])
    ok = d <= window_mm  # NaN track positions never match
    ev, layer, d, sig = ev[ok], layer[ok], d[ok], f["stk_signal"][ok]
    key = ev * geo.STK_N_LAYERS + layer
    order = np.lexsort((d, key))  # by (event, layer), closest first
    first = np.ones(len(order), dtype=bool)
    first[1:] = key[order][1:] != key[order][:-1]
    sel = order[first]
    out = np.full((n, geo.STK_N_LAYERS), np.nan)
    out[ev[sel], layer[sel]] = sig[sel]
    return out


def truncated_mean_signal(signals: np.ndarray, factor: float = ABNORMAL_SIGNAL_FACTOR) -> np.ndarray:
    """(N,) mean of each row's non-NaN signals after dropping those above `factor` x the row median."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: no hit at all
        med = np.nanmedian(signals, axis=1)
    keep = np.isfinite(signals) & (signals <= factor * med[:, None])
    n = keep.sum(axis=1)
    s = np.where(keep, signals, 0.0).sum(axis=1)
    return np.divide(s, n, out=np.full(len(n), np.nan), where=n > 0)


def stk_charge_along(events: dict, track_pos: np.ndarray, window_mm: float = 0.3) -> np.ndarray:
    """(N,) STK charge along a track: sqrt(truncated mean signal x cos theta); NaN without hits.

    The paper's STK charge (docs/reconstruction.md): signal ~ Z^2 / cos theta, so proton ~1,
    helium ~2. Abnormal hits are dropped by `truncated_mean_signal`.
    """
    mean = truncated_mean_signal(stk_signal_along(events, track_pos, window_mm))
    return np.sqrt(mean * _cos_from_positions(track_pos))


def backsplash_counts(events: dict, min_distance_mm: float = BACKSPLASH_MIN_DISTANCE_MM) -> np.ndarray:
    """(N,) non-primary STK clusters farther than `min_distance_mm` from the true track (MC only).

    Mostly calorimeter albedo; also counts the ~0.5 noise clusters per event and the
    far secondaries of interactions in the STK.
    """
    ev, d, primary = _distance_to_true_track(events)
    sel = ~primary & (d > min_distance_mm)
    return np.bincount(ev[sel], minlength=len(events["true_inelastic"]))


def _distance_to_true_track(events: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per STK cluster: its event, its distance (mm) to the true track in its layer, and whether the
    primary made it (MC only)."""
    pos_true = truth_track_positions(events)
    ev, f = _flat_stk(events, ("stk_layer", "stk_pos", "stk_is_primary"))
    d = np.abs(f["stk_pos"] - pos_true[ev, f["stk_layer"].astype(np.int64)])
    return ev, d, f["stk_is_primary"].astype(bool)


#: Distance bands (mm) of `clusters_near_track`: beside the primary's cluster, within the chain's refit
#: window, within the precise Hough image's half width.
NEAR_TRACK_BANDS_MM: tuple[tuple[float, float], ...] = ((0.25, 1.0), (1.0, 3.0), (3.0, 10.0))


def clusters_near_track(
    events: dict, bands_mm: Iterable[tuple[float, float]] = NEAR_TRACK_BANDS_MM
) -> tuple[np.ndarray, int]:
    """Activity near clean tracks (MC only): the non-primary STK clusters at each band of distance from
    the primary's own position, in the layers of events without an inelastic interaction before the
    BGO, and the number of primary hits of those events (counts / hits: clusters per layer crossed).

    What delta rays add (charge-squared scaling, flat with energy) and backsplash too (growing with
    energy): docs/simulation.md.
    """
    clean = ~np.asarray(events["true_inelastic"], dtype=bool)
    ev, d, primary = _distance_to_true_track(events)
    other = clean[ev] & ~primary
    counts = np.array([(other & (d >= lo) & (d < hi)).sum() for lo, hi in bands_mm])
    return counts, int((clean[ev] & primary).sum())


# --------------------------------------------------------------------------- PSD


def psd_charge_along(events: dict, track: np.ndarray) -> np.ndarray:
    """(N,) PSD charge: min over the two layers of sqrt(E_bar cos theta / MIP) of the crossed bar.

    The minimum of the two layers resists the albedo and secondaries that add energy to
    one bar; NaN where the track misses both layers.
    """
    n = len(track)
    x, y = track_xy(track, geo.PSD_Z)
    cos_t = cos_theta(track)
    e = np.asarray(events["psd_energy"], dtype=np.float64)
    q = np.full((n, geo.PSD_N_LAYERS), np.nan)
    for layer, coord in enumerate(geo.PSD_MEASURES):
        pos = (x if coord == "x" else y)[:, layer]
        bar = np.floor((pos + geo.PSD_HALF_WIDTH) / geo.PSD_BAR_PITCH)
        inside = np.isfinite(bar) & (bar >= 0) & (bar < geo.PSD_BARS_PER_LAYER)
        b = np.where(inside, bar, 0).astype(np.int64)
        eb = e[np.arange(n), layer, b]
        q[:, layer] = np.where(inside, np.sqrt(np.maximum(eb, 0.0) * cos_t / geo.PSD_MIP_MEV), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(q, axis=1)


# --------------------------------------------------------------------------- plots


@dataclass
class _Sample:
    """Events of one particle (MC, grouped by true_pdg) or of one flight file."""

    label: str
    mc: bool
    events: list[dict] = field(default_factory=list)

    def get(self, name: str) -> np.ndarray | ak.Array:
        parts = [e[name] for e in self.events]
        if isinstance(parts[0], ak.Array):
            return ak.concatenate(parts)
        return np.concatenate(parts)

    def all(self) -> dict:
        names = self.events[0].keys()
        return {k: self.get(k) for k in names}


def _load(files: list[str], max_events: int | None) -> tuple[dict[str, _Sample], list[_Sample]]:
    """Read every file (strictly: any bad file raises EventFileError naming it)."""
    mc: dict[str, _Sample] = {}
    flight: list[_Sample] = []
    for path in files:
        info = inspect_file(path)
        events = read_validated(path, info=info, entry_stop=max_events)
        if info.mode == "mc":
            pdg = np.asarray(events["true_pdg"])
            for code in np.unique(pdg):
                name = PARTICLE_OF_PDG.get(int(code), f"pdg {int(code)}")
                sel = pdg == code
                part = {k: v[sel] for k, v in events.items()}
                mc.setdefault(name, _Sample(name, True)).events.append(part)
        else:
            run = info.metadata.get("run_id", "?")
            flight.append(_Sample(f"flight: {Path(path).name} (run {run})", False, [events]))
    order = {"electron": 0, "proton": 1, "helium": 2}
    mc = dict(sorted(mc.items(), key=lambda kv: order.get(kv[0], 9)))
    return mc, flight


def _log_bins(values: np.ndarray, per_decade: int = 5) -> np.ndarray:
    """Log-spaced bin edges on whole decades covering the positive values."""
    v = values[np.isfinite(values) & (values > 0)]
    if len(v) == 0:
        return np.logspace(-1, 6, 7 * per_decade + 1)
    lo, hi = np.floor(np.log10(v.min())), np.ceil(np.log10(v.max()))
    return np.logspace(lo, hi, int((hi - lo) * per_decade) + 1)


def _binned_mean(x: np.ndarray, y: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, ...]:
    """Bin centres (geometric), mean of y and its standard error in bins of x (NaN where empty)."""
    idx = np.digitize(x, bins) - 1
    ok = (idx >= 0) & (idx < len(bins) - 1) & np.isfinite(y)
    n = np.bincount(idx[ok], minlength=len(bins) - 1).astype(float)
    s = np.bincount(idx[ok], weights=y[ok], minlength=len(bins) - 1)
    s2 = np.bincount(idx[ok], weights=y[ok] ** 2, minlength=len(bins) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s / n
        err = np.sqrt(np.maximum(s2 / n - mean**2, 0.0) / n)
    return np.sqrt(bins[:-1] * bins[1:]), mean, err, n


class _Plotter:
    """Writes one PNG per figure into out_dir (Agg canvas, no pyplot state) and remembers the paths."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.written: list[Path] = []

    def figure(self, ncols: int = 1, width: float = 6.4, height: float = 4.8):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(width * ncols, height))
        FigureCanvasAgg(fig)
        return fig, fig.subplots(1, ncols, squeeze=False)

    def save(self, fig, name: str) -> None:
        path = self.out_dir / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        self.written.append(path)


def _plot_deposit(p: _Plotter, samples: list[_Sample]) -> None:
    fig, axs = p.figure()
    ax = axs[0, 0]
    dep = {s.label: deposited_energy(s.get("bgo_energy")) / 1e3 for s in samples}
    bins = _log_bins(np.concatenate(list(dep.values())), 8)
    for s in samples:
        ax.hist(
            dep[s.label],
            bins=bins,
            histtype="step",
            lw=1.5,
            density=True,
            label=s.label,
            color=PARTICLE_COLOURS.get(s.label, "0.2"),
            ls="-" if s.mc else "--",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="BGO deposited energy [GeV]",
        ylabel="events per GeV (normalised)",
        title="BGO deposited energy",
    )
    ax.legend(fontsize=8)
    p.save(fig, "bgo_deposited_energy")


def _plot_longitudinal(p: _Plotter, samples: list[_Sample]) -> None:
    fig, axs = p.figure(2, width=6.0)
    layers = np.arange(geo.BGO_N_LAYERS)
    for s in samples:
        bgo = s.get("bgo_energy")
        prof = longitudinal_profile(bgo)
        ok = deposited_energy(bgo) > 0
        kw = dict(
            label=f"{s.label} ({ok.sum()} events)",
            color=PARTICLE_COLOURS.get(s.label, "0.2"),
            ls="-" if s.mc else "--",
            marker="o",
            ms=3,
        )
        axs[0, 0].plot(layers, prof[ok].mean(axis=0), **kw)
        start = shower_start_layer(bgo)
        h = np.bincount(start + 1, minlength=geo.BGO_N_LAYERS + 1) / len(start)
        axs[0, 1].step(np.arange(-1, geo.BGO_N_LAYERS), h, where="mid", **kw)
    axs[0, 0].set(
        xlabel="BGO layer (0 = top)",
        ylabel="mean fraction of the deposit",
        title="BGO longitudinal profile",
        yscale="log",
    )
    axs[0, 1].set(
        xlabel="shower start layer (-1: no shower, MIP-like)",
        ylabel="fraction of events",
        title=f"first layer > {SHOWER_START_MIP:g} MIP and > {SHOWER_START_FRACTION:.0%} of deposit",
    )
    for ax in axs[0]:
        ax.legend(fontsize=8)
    p.save(fig, "bgo_longitudinal_profile")


def _plot_lateral(p: _Plotter, mc: dict[str, _Sample]) -> None:
    samples = [mc[k] for k in ("electron", "proton") if k in mc]
    if not samples:
        return
    fig, axs = p.figure()
    ax = axs[0, 0]
    layers = np.arange(geo.BGO_N_LAYERS)
    for s in samples:
        bgo = s.get("bgo_energy")
        rms = lateral_rms(bgo)
        showering = shower_start_layer(bgo) >= 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ax.plot(
                layers,
                np.nanmean(rms[showering], axis=0),
                "o-",
                ms=3,
                color=PARTICLE_COLOURS[s.label],
                label=f"{s.label}, showering ({showering.sum()})",
            )
            if s.label != "electron":
                ax.plot(
                    layers,
                    np.nanmean(rms, axis=0),
                    "o:",
                    ms=3,
                    color=PARTICLE_COLOURS[s.label],
                    label=f"{s.label}, all ({len(rms)})",
                )
    ax.set(
        xlabel="BGO layer (0 = top)",
        ylabel="mean energy-weighted RMS width [mm]",
        title="BGO lateral shower width per layer",
    )
    ax.legend(fontsize=8)
    p.save(fig, "bgo_lateral_rms")


def _plot_backsplash(p: _Plotter, mc: dict[str, _Sample]) -> None:
    fig, axs = p.figure(width=7.0)
    ax = axs[0, 0]
    for s in mc.values():
        ev = s.all()
        dep = deposited_energy(ev["bgo_energy"]) / 1e3
        n = backsplash_counts(ev).astype(float)
        c = PARTICLE_COLOURS.get(s.label, "0.2")
        ax.scatter(dep, np.maximum(n, 0.5), s=2, alpha=0.25, color=c, rasterized=True)
        centres, mean, err, cnt = _binned_mean(dep, n, _log_bins(dep, 4))
        ok = cnt >= 5
        ax.errorbar(centres[ok], mean[ok], yerr=err[ok], fmt="o-", color=c, label=f"{s.label}: mean")
    ax.axhline(12, color="k", ls="--", lw=1, label="12 = primary's hits")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="BGO deposited energy [GeV]",
        ylabel="non-primary STK clusters > 5 mm from the true track",
        title="Backsplash (incl. noise and far secondaries; points: events, 0 drawn at 0.5)",
    )
    ax.legend(fontsize=8)
    p.save(fig, "backsplash_vs_deposit")


def _plot_charges(p: _Plotter, mc: dict[str, _Sample]) -> None:
    samples = [mc[k] for k in ("proton", "helium") if k in mc]
    if not samples:
        return
    data = {}
    for s in samples:
        ev = s.all()
        track = truth_track(ev)
        data[s.label] = (
            deposited_energy(ev["bgo_energy"]) / 1e3,
            stk_charge_along(ev, track_positions(track)),
            psd_charge_along(ev, track),
        )
    ranges = [("deposit < 1 TeV", 0, 1e3), ("1-10 TeV", 1e3, 1e4), ("deposit > 10 TeV", 1e4, np.inf)]
    for i, name in ((1, "stk_charge"), (2, "psd_charge")):
        fig, axs = p.figure(len(ranges), width=5.0)
        bins = np.linspace(0, 4, 121)
        for ax, (title, lo, hi) in zip(axs[0], ranges, strict=True):
            for label, d in data.items():
                sel = (d[0] >= lo) & (d[0] < hi)
                q = d[i][sel]
                med = np.nanmedian(q) if np.isfinite(q).any() else np.nan
                ax.hist(
                    np.clip(q[np.isfinite(q)], 0, 3.99),
                    bins=bins,
                    histtype="step",
                    lw=1.5,
                    color=PARTICLE_COLOURS[label],
                    label=f"{label}: {sel.sum()} ev., median {med:.2f}",
                )
            ax.set(
                xlabel=f"{'STK' if i == 1 else 'PSD'} charge along the true track [e]",
                ylabel="events",
                yscale="log",
                title=title,
            )
            ax.legend(fontsize=8)
        p.save(fig, name)


def _plot_inelastic(p: _Plotter, mc: dict[str, _Sample]) -> None:
    fig, axs = p.figure()
    ax = axs[0, 0]
    for s in mc.values():
        e = np.asarray(s.get("true_energy"))
        inel = np.asarray(s.get("true_inelastic"), dtype=float)
        centres, frac, _, n = _binned_mean(e, inel, _log_bins(e, 3))
        ok = n > 0
        err = np.sqrt(np.clip(frac * (1 - frac), 1e-4, None) / np.maximum(n, 1))
        ax.errorbar(
            centres[ok],
            frac[ok],
            yerr=err[ok],
            fmt="o-",
            color=PARTICLE_COLOURS.get(s.label, "0.2"),
            label=f"{s.label}: {inel.mean():.1%} overall",
        )
    ax.set(
        xscale="log",
        xlabel="true kinetic energy [GeV]",
        ylabel="fraction with an inelastic interaction before the BGO",
        title="Inelastic interactions in PSD + STK",
        ylim=(0, None),
    )
    ax.legend(fontsize=8)
    p.save(fig, "inelastic_fraction")


def _plot_display(p: _Plotter, ev: dict, i: int, name: str, title: str) -> None:
    """BGO xz/yz images with STK hits (and the true track when the file has truth)."""
    from matplotlib.colors import LogNorm

    has_truth = "true_x_top" in ev
    fig, axs = p.figure(2, width=6.0, height=7.0)
    bgo = np.asarray(ev["bgo_energy"][i], dtype=np.float64)
    layer = ak.to_numpy(ev["stk_layer"][i]).astype(int)
    pos = ak.to_numpy(ev["stk_pos"][i])
    sig = ak.to_numpy(ev["stk_signal"][i])
    prim = ak.to_numpy(ev["stk_is_primary"][i]).astype(bool) if has_truth else np.zeros(len(pos), bool)
    x_edges = np.append(
        geo.BGO_BAR_CENTRES - geo.BGO_BAR_PITCH / 2, geo.BGO_BAR_CENTRES[-1] + geo.BGO_BAR_PITCH / 2
    )
    pitch = geo.BGO_LAYER_Z[1] - geo.BGO_LAYER_Z[0]
    z_edges = np.append(geo.BGO_LAYER_Z - pitch / 2, geo.BGO_LAYER_Z[-1] + pitch / 2)
    positive = bgo[bgo > 0]
    norm = LogNorm(vmin=max(positive.min(), 1.0), vmax=max(positive.max(), 10.0)) if len(positive) else None
    z_line = np.array([geo.PSD_Z[0] - 10, geo.BGO_Z_BOTTOM])
    for k, (ax, coord) in enumerate(zip(axs[0], ("x", "y"), strict=True)):
        img = np.where(
            (geo.BGO_LAYER_MEASURES_X if coord == "x" else ~geo.BGO_LAYER_MEASURES_X)[:, None], bgo, np.nan
        )
        img = np.ma.masked_where(~(img > 0), img)
        mesh = ax.pcolormesh(x_edges, z_edges, img, norm=norm, cmap="viridis")
        view = geo.STK_LAYER_MEASURES_X[layer] == (coord == "x")
        big = view & (sig > 3 * (np.median(sig[view]) if view.any() else 1.0))
        other = "other STK clusters" if has_truth else "STK clusters (no truth)"
        for sel, kw in (
            (view & ~prim, dict(marker="x", color="0.4", s=12, label=other)),
            (
                view & prim,
                dict(marker="o", facecolors="none", edgecolors="r", s=30, label="primary's STK clusters"),
            ),
            (
                big,
                dict(
                    marker="s",
                    facecolors="none",
                    edgecolors="orange",
                    s=40,
                    label="signal > 3x the event's median",
                ),
            ),
        ):
            if sel.any():
                ax.scatter(pos[sel], geo.STK_LAYER_Z[layer[sel]], **kw)
        if has_truth:
            tr = truth_track(
                {
                    kk: np.asarray(ev[kk][i : i + 1])
                    for kk in ("true_x_top", "true_y_top", "true_x_bot", "true_y_bot")
                }
            )
            xs, ys = track_xy(tr, z_line)
            ax.plot((xs if coord == "x" else ys)[0], z_line, "r-", lw=0.8, label="true track")
        for z in geo.STK_LAYER_Z[geo.STK_LAYER_MEASURES_X == (coord == "x")]:
            ax.axhline(z, color="0.85", lw=0.5, zorder=0)
        for z in geo.PSD_Z:
            ax.axhline(z, color="tab:purple", lw=0.5, ls=":", zorder=0)
        ax.set(
            xlim=(-420, 420),
            ylim=(geo.BGO_Z_BOTTOM + 10, geo.PSD_Z[0] - 20),
            xlabel=f"{coord} [mm]",
            ylabel="z [mm] (downward)",
            title=f"{coord}z view",
        )
        ax.set_xticks(np.arange(-400, 401, 100))
        ax.set_yticks(np.round(np.concatenate([geo.STK_PLANE_Z, geo.BGO_LAYER_Z[k::2]])), minor=True)
        ax.legend(fontsize=7, loc="upper left")
        fig.colorbar(mesh, ax=ax, label="BGO bar energy [MeV]", shrink=0.7)
    fig.suptitle(title, fontsize=10)
    p.save(fig, name)


def _display_event(ev: dict, target_gev: float) -> int:
    """A showering event (start in the top 4 layers) with energy closest to target_gev in log.

    The true energy where the file has truth, else the BGO deposit. ~100 TeV protons show
    the hard case: the primary's 12 hits among ~100 backsplash clusters, no saturation yet.
    """
    energy = (
        np.asarray(ev["true_energy"]) if "true_energy" in ev else deposited_energy(ev["bgo_energy"]) / 1e3
    )
    start = shower_start_layer(ev["bgo_energy"])
    ok = (start >= 0) & (start <= 3) & (energy > 0)
    if not ok.any():
        ok = energy > 0
    if not ok.any():
        return int(np.argmax(energy))
    cand = np.flatnonzero(ok)
    return int(cand[np.argmin(np.abs(np.log(energy[cand] / target_gev)))])


def make_validation_plots(
    files: list[str], out_dir: str | os.PathLike, *, max_events_per_file: int | None = 200_000
) -> list[Path]:
    """Draw the simulation's validation plots for MC (and flight) event files; returns the PNGs.

    Any unreadable or invalid file raises `EventFileError` naming it. Flight files (no
    truth) contribute to the deposit and profile plots and get their own event display;
    the plots that need truth are drawn from the MC files only (skipped if there are none).
    """
    if not files:
        raise InputError("no event files given")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mc, flight = _load(files, max_events_per_file)
    p = _Plotter(out)
    everything = list(mc.values()) + flight
    _plot_deposit(p, everything)
    _plot_longitudinal(p, everything)
    if mc:
        _plot_lateral(p, mc)
        _plot_backsplash(p, mc)
        _plot_charges(p, mc)
        _plot_inelastic(p, mc)
    if "proton" in mc:
        ev = mc["proton"].all()
        i = _display_event(ev, 1e5)
        e = float(ev["true_energy"][i])
        dep = deposited_energy(ev["bgo_energy"][i : i + 1])[0] / 1e3
        _plot_display(
            p,
            ev,
            i,
            "event_display_proton",
            f"MC proton, E = {e / 1e3:.0f} TeV, BGO deposit {dep:.0f} GeV, "
            f"inelastic before BGO: {bool(ev['true_inelastic'][i])}",
        )
    for k, s in enumerate(flight):
        ev = s.all()
        i = _display_event(ev, 3e4)
        dep = deposited_energy(ev["bgo_energy"][i : i + 1])[0] / 1e3
        _plot_display(
            p,
            ev,
            i,
            f"event_display_flight{'' if k == 0 else f'_{k}'}",
            f"{s.label}, event {int(ev['event_id'][i])}, BGO deposit {dep:.0f} GeV (no truth)",
        )
    return p.written
