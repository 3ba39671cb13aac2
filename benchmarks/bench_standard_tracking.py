"""Standard track reconstruction: events per second per core per energy bin, and its Table 2 calibration.

Run: `.venv/bin/python benchmarks/bench_standard_tracking.py [--events 2000] [--seed 7]
[--match-mm 10 20 30 40] [--simulation-version 3] [--refuse-single-strip] [--crosstalk X]`.
One process with BLAS pinned to one thread, so every rate is per core. For each particle
and each of the paper's Table 2 energy bins it simulates events (E^-1 within the bin, not
timed), times the standard reconstruction (BGO axis fit, road, seeds, extension,
cleaning, x/y combination, standard selection), then prints the track efficiency of the
standard and the ideal selection beside the paper's Table 2. Events with an inelastic
interaction in the PSD (MC truth) are left out of the efficiency, as in the paper's
selection (section 3); the 85%/95% windows are those of the clean peaks (events without
an inelastic interaction before the BGO), as the paper's Fig. 2: with interacting events
in, the protons' 95% window reaches past charge 2.5 above 50 TeV.

`--match-mm` also prints the standard selection's 85% efficiency for other BGO-match cuts and
for the version-2 criteria, all on the same candidates (only the quality criteria change).
Every run prints the shower axis' 68% errors at the BGO top (what the 10 mm match cuts on).
`--backsplash NORM INDEX` simulates with another albedo multiplicity, NORM (E_dep/10 GeV)^INDEX
(detector.stk; a calibration study, not a setting of the simulation).
`--losses` prints where the standard selection's events go: no track, a track other than the primary's,
or the primary's track (whose charge may still fall outside the window).
`--refuse-single-strip` adds the criteria with DAMPE's helium-analysis option of refusing tracks that
hold a cluster one readout strip wide to the `--match-mm` table; `--crosstalk X` simulates with a
direct coupling between readout neighbours (`detector.strips.READOUT_CROSSTALK`, a study, off in every
version).
`--simulation-version` simulates with another version (the one before, 2, records every accepted
primary; version 3 only the events DAMPE's high-energy trigger fires on).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform as stdlib_platform
import time
from dataclasses import replace

import awkward as ak
import numpy as np

from dampeml.detector import stk, strips
from dampeml.detector.simulation import SIMULATION_VERSION, SimulationConfig, simulate
from dampeml.evaluation.efficiency import PAPER_ENERGY_BINS, efficiency_table, paper_value, table2_masks
from dampeml.features.tracks import truth_track
from dampeml.reconstruction.hits import track_charge
from dampeml.reconstruction.standard import (
    StandardConfig,
    angle_between,
    distance_at_bgo_top,
    passes_quality,
    reconstruct,
    select_ideal,
    select_standard,
)

PAPER_SECONDS_PER_EVENT = 3.4  # the paper's standard reconstruction on one CPU core
#: The quality criteria before simulation version 3: a 30 mm match, chi2/ndf 10, nothing else.
VERSION2_CRITERIA = StandardConfig(
    match_mm=30.0, quality_max_chi2_ndf=10.0, max_unpaired_planes=None, require_first_plane=False,
    require_psd_match=False,
)  # fmt: skip


def criteria_variants(match_mm: list[float], refuse_single_strip: bool = False) -> dict[str, StandardConfig]:
    """Name -> quality criteria: the default with each match cut, and the version-2 criteria; the
    default refusing single-strip clusters if asked."""
    out = {f"{m:g} mm": replace(StandardConfig(), match_mm=m) for m in match_mm}
    out = {**out, "v2 criteria": VERSION2_CRITERIA} if out else out
    if refuse_single_strip:
        out["refusing single-strip"] = replace(StandardConfig(), refuse_single_strip=True)
    return out


def one_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def cpu_busy(seconds: float = 1.0) -> float:
    """Cores busy system-wide over `seconds` (from /proc/stat), to flag a loaded machine."""

    def read() -> tuple[float, float]:
        with open("/proc/stat") as f:
            v = [float(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]

    t0, i0 = read()
    time.sleep(seconds)
    t1, i1 = read()
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(t1 - t0, 1e-9))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=2000, help="events per particle and energy bin")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--particles", nargs="+", default=["proton", "helium"], choices=["proton", "helium"])
    ap.add_argument(
        "--bins", nargs="+", type=int, help="indices of the Table 2 energy bins to run (default: all)"
    )
    ap.add_argument(
        "--backsplash", nargs=2, type=float, metavar=("NORM", "INDEX"), help="albedo multiplicity (study)"
    )
    ap.add_argument(
        "--match-mm",
        nargs="*",
        type=float,
        default=[],
        help="also the standard selection with these BGO-match cuts",
    )
    ap.add_argument("--simulation-version", type=int, default=SIMULATION_VERSION, help="physics version")
    ap.add_argument(
        "--all-strips",
        action="store_true",
        help="charges from every cluster (version 3 files: ignore the widths, no single-strip rule)",
    )
    ap.add_argument("--losses", action="store_true", help="also where the standard selection loses events")
    ap.add_argument(
        "--refuse-single-strip", action="store_true", help="also the criteria refusing single-strip clusters"
    )
    ap.add_argument("--crosstalk", type=float, default=0.0, help="study: strips.READOUT_CROSSTALK")
    args = ap.parse_args()
    variants = criteria_variants(args.match_mm, args.refuse_single_strip)
    if args.crosstalk:
        strips.READOUT_CROSSTALK = args.crosstalk
        print(f"readout cross-talk: {args.crosstalk:g}")
    if args.backsplash:
        stk.BACKSPLASH_NORM, stk.BACKSPLASH_INDEX = args.backsplash
        print(f"albedo multiplicity: {args.backsplash[0]:g} (E_dep / 10 GeV)^{args.backsplash[1]:g}")
    bins = [b for i, b in enumerate(PAPER_ENERGY_BINS) if args.bins is None or i in args.bins]
    print(f"machine: {stdlib_platform.processor() or stdlib_platform.machine()}, {os.cpu_count()} cores")
    print(f"simulation version {args.simulation_version}")
    print(f"cores busy before: {cpu_busy():.2f}")
    speed, rows, losses = [], [], []
    with one_thread():
        for particle in args.particles:
            p_i = ("proton", "helium").index(particle)
            for b_i, (lo, hi) in enumerate(PAPER_ENERGY_BINS):
                if (lo, hi) not in bins:
                    continue
                seed = args.seed + 10 * p_i + b_i
                version = args.simulation_version
                cfg = SimulationConfig(particle, args.events, lo, hi, seed=seed, version=version)
                ev, _ = simulate(cfg)
                if args.all_strips:
                    ev.pop("stk_width", None)
                reconstruct(_head(ev, 50))  # warm-up
                t0, c0 = time.perf_counter(), time.process_time()
                res = reconstruct(ev)
                dt, cpu = time.perf_counter() - t0, time.process_time() - c0
                truth = truth_track(ev)
                ideal = select_ideal(res.candidates, truth)
                q_true, q_std, q_ideal = (track_charge(ev, t) for t in (truth, res.track, ideal))
                charges = {"standard": q_std, "ideal": q_ideal}
                for name, crit in variants.items():
                    cands = replace(res.candidates, quality=passes_quality(res.candidates, crit))
                    charges[name] = track_charge(ev, select_standard(cands, len(truth)))
                counted, peak = table2_masks(ev["true_inelastic"], ev["true_interaction_z"])
                rows += efficiency_table(
                    particle,
                    ev["true_energy"],
                    q_true,
                    charges,
                    energy_bins=[(lo, hi)],
                    mask=counted,
                    peak_mask=peak,
                )
                if args.losses:
                    losses.append((particle, lo, hi, *track_outcomes(res.track[counted], truth[counted])))
                fitted = np.isfinite(res.axis).all(axis=1)
                axis_errors = (
                    np.percentile(distance_at_bgo_top(res.axis[fitted], truth[fitted]), 68),
                    np.degrees(np.percentile(angle_between(res.axis[fitted], truth[fitted]), 68)),
                )
                speed.append(
                    (
                        particle,
                        lo,
                        hi,
                        args.events / cpu,
                        args.events / dt,
                        float(ak.mean(ak.num(ev["stk_pos"]))),
                        float(res.n_candidates.mean()),
                        *axis_errors,
                    )
                )
                print(
                    f"  {particle} {lo / 1e3:g}-{hi / 1e3:g} TeV: {args.events / cpu:.0f} events per CPU-s, "
                    f"{args.events / dt:.0f} wall events/s",
                    flush=True,
                )
    print(f"cores busy after: {cpu_busy():.2f}")

    print("\n## Speed (one core)\n")
    print(
        "events/s per CPU-second counts only this process's CPU time, so it holds on a busy machine; "
        "wall-clock events/s equals it only when the core is free."
    )
    print(
        "\n| particle | E (TeV) | STK clusters/event | candidates/event | events per CPU-s | ms CPU/event "
        "| wall events/s | paper's 3.4 s/event / ours |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for particle, lo, hi, rate, wall, n_cl, n_c, *_ in speed:
        print(
            f"| {particle} | {lo / 1e3:g}-{hi / 1e3:g} | {n_cl:.0f} | {n_c:.1f} | {rate:.0f} "
            f"| {1e3 / rate:.2f} | {wall:.0f} | {rate * PAPER_SECONDS_PER_EVENT:.0f}x |"
        )

    print("\n## Shower axis, 68% errors against the true track (every event with a fitted axis)\n")
    print("| particle | E (TeV) | distance at the BGO top (mm) | 3D angle (deg) |")
    print("|---|---|---|---|")
    for particle, lo, hi, *_, d68, a68 in speed:
        print(f"| {particle} | {lo / 1e3:g}-{hi / 1e3:g} | {d68:.1f} | {a68:.2f} |")

    print("\n## Track efficiency (%), ours vs the paper's Table 2\n")
    print(
        "| particle | E (TeV) | standard 85% | paper | standard 95% | paper "
        "| ideal 85% | paper | ideal 95% | paper |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    table = {(r["particle"], r["e_min"], r["method"], r["containment"]): r for r in rows}
    for particle in args.particles:
        for lo, hi in bins:
            cells = []
            for method in ("standard", "ideal"):
                for c in (0.85, 0.95):
                    r = table[(particle, lo, method, c)]
                    cells += [
                        f"{100 * r['efficiency']:.1f}",
                        f"{paper_value(particle, method, lo, hi, c):.1f}",
                    ]
            print(f"| {particle} | {lo / 1e3:g}-{hi / 1e3:g} | " + " | ".join(cells) + " |")
    if variants:
        print("\n## Standard selection, 85% window, by quality criteria (%)\n")
        print("| particle | E (TeV) | " + " | ".join(variants) + " | paper |")
        print("|---|---|" + "---|" * (len(variants) + 1))
        for particle in args.particles:
            for lo, hi in bins:
                cells = [f"{100 * table[(particle, lo, v, 0.85)]['efficiency']:.1f}" for v in variants]
                paper = paper_value(particle, "standard", lo, hi, 0.85)
                print(
                    f"| {particle} | {lo / 1e3:g}-{hi / 1e3:g} | " + " | ".join(cells) + f" | {paper:.1f} |"
                )
    if losses:
        print("\n## Where the standard selection's events go (%, events without a PSD interaction)\n")
        print(f"the primary's: within {SAME_TRACK_MM:g} mm at the BGO top and {SAME_TRACK_DEG:g} degrees "
              "of the true track\n")  # fmt: skip
        print("| particle | E (TeV) | no track | another track | the primary's track |")
        print("|---|---|---|---|---|")
        for particle, lo, hi, none, other, primary in losses:
            print(f"| {particle} | {lo / 1e3:g}-{hi / 1e3:g} | {none:.1f} | {other:.1f} | {primary:.1f} |")
    n_true = [r["n_true"] for r in rows]
    print(f"\nevents in the true-track window per row: {min(n_true)}-{max(n_true)}")


SAME_TRACK_MM, SAME_TRACK_DEG = 2.0, 1.0


def track_outcomes(track: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """% of events with no selected track, with a track other than the primary's, with the primary's."""
    found = np.isfinite(track).all(axis=1)
    near = np.zeros(len(track), bool)
    near[found] = (distance_at_bgo_top(track[found], truth[found]) < SAME_TRACK_MM) & (
        np.degrees(angle_between(track[found], truth[found])) < SAME_TRACK_DEG
    )
    n = max(len(track), 1)
    return 100 * (~found).sum() / n, 100 * (found & ~near).sum() / n, 100 * near.sum() / n


def _head(ev: dict, n: int) -> dict:
    return {k: v[:n] for k, v in ev.items()}


if __name__ == "__main__":
    main()
