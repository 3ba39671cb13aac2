"""Feature throughput, per core: Hough images (renderer vs reference), BGO images, compact sizes.

Run: `.venv/bin/python benchmarks/bench_features.py [--events 2000] [--energy 100 1e5] [--against REV]`.
One process with BLAS pinned to one thread, so every rate is per core. Events are simulated
protons, 100 GeV - 100 TeV by default (E^-1), with a prediction smeared around the truth by a
fifth of the RoI half window (what the previous stage leaves), so the RoI holds the realistic
mix of primary, secondary, backsplash and noise hits. `--against REV` also times the Hough
renderer of git revision REV on the same hits, checks that its images are identical, and prints
the ratio (how a change of the renderer is measured side by side).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import importlib.util
import os
import platform as stdlib_platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import awkward as ak
import numpy as np

from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.features.bgo_image import bgo_image
from dampeml.features.hough import (
    COARSE,
    PRECISE,
    HoughGeometry,
    render_hough,
    render_hough_reference,
    select_roi_hits,
)
from dampeml.features.shower_axis import fit_shower_axis
from dampeml.features.shower_variables import shower_variables
from dampeml.features.stk_image import STK_IMAGE_SHAPE, render_stk_image
from dampeml.features.tracks import cos_theta, truth_track

BATCH = 64


def one_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def rate(fn, n_items: int, min_seconds: float = 1.0) -> float:
    """Items per second of fn() (which handles n_items), repeated for at least min_seconds."""
    fn()  # warm-up
    runs, t0 = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds:
            return runs * n_items / dt


def renderer_at(rev: str):
    """`render_hough` as it was at git revision `rev` (its hough.py loaded beside this checkout's package)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(
        ["git", "-C", root, "show", f"{rev}:platform/dampeml/features/hough.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    name = "hough_" + re.sub(r"\W", "_", rev)  # e.g. origin/main -> hough_origin_main
    folder = tempfile.mkdtemp()
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # numba may compile from it until exit
    path = os.path.join(folder, f"{name}.py")
    with open(path, "w") as out:
        out.write(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.render_hough


def bench_hough(events: dict, geometry: HoughGeometry, n_reference: int, against=None, rev: str = "") -> None:
    truth = truth_track(events)
    rng = np.random.default_rng(1)
    prediction = truth + rng.normal(0.0, geometry.half_window_mm / 5, truth.shape)
    cos_t = cos_theta(prediction)
    hits = select_roi_hits(events["stk_layer"], events["stk_pos"], events["stk_signal"], prediction, geometry)
    n = hits.n_events

    def batches(render) -> list[np.ndarray]:
        return [
            render(hits.events(start, start + BATCH), cos_t[start : start + BATCH], geometry)
            for start in range(0, n, BATCH)
        ]

    sub = hits.events(0, n_reference)
    v_rate = rate(lambda: batches(render_hough), n)
    r_rate = rate(lambda: render_hough_reference(sub, cos_t[:n_reference], geometry), n_reference, 0.5)
    dense = geometry.n_pixels**2 * 4
    print(
        f"Hough {geometry.pixel_mm * 1e3:.0f} um x {geometry.n_pixels} (+-{geometry.half_window_mm:.0f} mm): "
        f"RoI hits/event mean {hits.counts.mean():.1f} (p95 {np.percentile(hits.counts, 95):.0f})"
    )
    print(f"  renderer   {v_rate:9,.0f} images/s/core (batches of {BATCH})")
    if against is not None:
        same = all(np.array_equal(x, y) for x, y in zip(batches(render_hough), batches(against), strict=True))
        a_rate = rate(lambda: batches(against), n)
        v_rate = rate(lambda: batches(render_hough), n)  # again, after it: either order favours neither
        print(
            f"  at {rev:10s} {a_rate:9,.0f} images/s/core -> this checkout x{v_rate / a_rate:.2f} "
            f"(repeated: {v_rate:,.0f}/s); images {'identical' if same else 'DIFFER'}"
        )
    print(f"  reference  {r_rate:9,.1f} images/s/core -> speed-up x{v_rate / r_rate:,.0f}")
    print(
        f"  compact RoI hits {hits.nbytes / n:7,.1f} B/event (p95 "
        f"{9 * np.percentile(hits.counts, 95) + 4:,.0f}) vs dense uint8 image {dense:,} B: "
        f"x{dense * n / hits.nbytes:,.0f} smaller"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2000, help="simulated events")
    ap.add_argument("--reference-events", type=int, default=20, help="events for the slow reference renderer")
    ap.add_argument(
        "--energy", type=float, nargs=2, default=(100.0, 1e5), metavar=("LO", "HI"), help="proton energy, GeV"
    )
    ap.add_argument("--against", metavar="REV", help="also time the Hough renderer of this git revision")
    args = ap.parse_args()
    against = renderer_at(args.against) if args.against else None
    print(
        f"machine: {stdlib_platform.processor() or stdlib_platform.machine()}, "
        f"{os.cpu_count()} logical CPUs, python {stdlib_platform.python_version()}, numpy {np.__version__}"
    )
    events, _ = simulate(SimulationConfig("proton", args.events, *args.energy, seed=7))
    n = args.events
    with one_thread():
        for geometry in (PRECISE, COARSE):
            bench_hough(events, geometry, args.reference_events, against, args.against or "")
        bgo = events["bgo_energy"]
        print(f"BGO images        {rate(lambda: bgo_image(bgo), n):12,.0f} images/s/core")
        print(f"shower variables  {rate(lambda: shower_variables(bgo), n):12,.0f} events/s/core")
        print(f"shower-axis fit   {rate(lambda: fit_shower_axis(bgo), n):12,.0f} events/s/core")
        stk = [
            ak.to_numpy(ak.flatten(events[k])) for k in ("stk_layer", "stk_half", "stk_channel", "stk_signal")
        ]
        counts = ak.to_numpy(ak.num(events["stk_layer"]))

        def raw_stk() -> None:
            bounds = np.concatenate([[0], np.cumsum(counts)])
            for s in range(0, n, BATCH):
                e = min(s + BATCH, n)
                render_stk_image(*(a[bounds[s] : bounds[e]] for a in stk), counts=counts[s:e])

        sparse = 8 * len(stk[0]) / n + 4  # layer, half (int8), channel (int16), signal (float32), count
        print(f"raw STK images    {rate(raw_stk, n):12,.0f} images/s/core (batches of {BATCH})")
        print(f"  sparse clusters {sparse:,.0f} B/event vs dense uint8 image {np.prod(STK_IMAGE_SHAPE):,} B")
    print("(rates include allocating the dense output; pages no pixel touches are mapped lazily by the OS)")


if __name__ == "__main__":
    main()
