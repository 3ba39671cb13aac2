"""Reprocessing throughput: the Ray Data job (chain actor pool) against the chain called in-process.

Run: `.venv/bin/python benchmarks/bench_reprocess.py [--files 4] [--events 1000] [--actors 1 2]
[--batch-size 512] [--tracking-uri URI]`.

The same MC proton files (100 GeV - 10 TeV, E^-1) go through:

1. in-process: `Chain.from_registry` once, then per file `read_events` (the branches the job
   reads) and `chain.run` in batches of --batch-size, in this one process;
2. `dampeml.inference.reprocess` on a local Ray (`init_ray(num_cpus=4)`) with each --actors
   value: read tasks, the actor pool, the driver's per-file commits.

For Ray it prints the wall time of the whole job (planning, actor start with model loading, reads,
commits, summary), the net rate (events / (wall - the in-process model-loading time)) and the
steady rate (events back from the actors after the first batch / time from the first to the last
batch; biased high when few batches: an actor runs several batches at once in threads). The ratio
is the net rate over the in-process rate. Models: untrained small-preset networks registered in a
private MLflow store (`registry.bootstrap`; registering them takes minutes), or the store of
--tracking-uri, whose @production must hold every network of the chain. Rates of untrained
networks equal those of trained ones (same architectures); their outputs mean nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.io.root_writer import write_event_file

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_files(d: Path, n_files: int, events: int) -> list[Path]:
    paths = []
    for i in range(n_files):
        branches, meta = simulate(SimulationConfig("proton", events, 100, 1e4, seed=500 + i))
        paths.append(write_event_file(d / f"run{i:03d}.root", branches, meta))
    return paths


def in_process(paths: list[Path], batch_size: int) -> tuple[float, float, int]:
    """(model load seconds, seconds for read + chain, events)."""
    from dampeml.inference.reprocess import BRANCHES
    from dampeml.io.root_reader import read_events
    from dampeml.reconstruction.chain import Chain

    t0 = time.perf_counter()
    chain = Chain.from_registry(alias="production")
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = 0
    for p in paths:
        events = read_events(p, branches=list(BRANCHES))
        m = len(events["event_id"])
        for s in range(0, m, batch_size):
            chain.run({k: v[s : s + batch_size] for k, v in events.items()})
        n += m
    return load, time.perf_counter() - t0, n


def through_ray(paths: list[Path], out: Path, actors: int, batch_size: int) -> tuple[float, float, int]:
    """(wall seconds, steady events/s, events)."""
    from dampeml.inference.reprocess import ReprocessConfig, reprocess

    seen: list[tuple[float, int]] = []

    def progress(p) -> None:
        seen.append((time.perf_counter(), p.events_seen))

    t0 = time.perf_counter()
    cfg = ReprocessConfig([str(p) for p in paths], str(out), actors=actors, batch_size=batch_size)
    result = reprocess(cfg, progress=progress)
    wall = time.perf_counter() - t0
    back = [c for c in seen if c[1] > 0]
    steady = (back[-1][1] - back[0][1]) / (back[-1][0] - back[0][0]) if len(back) > 1 else float("nan")
    return wall, steady, result.summary["totals"]["events"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--events", type=int, default=1000, help="events per file")
    ap.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--tracking-uri", default=None, help="an MLflow store with @production (default: new)")
    args = ap.parse_args()

    import ray

    from dampeml.runtime import init_ray

    with tempfile.TemporaryDirectory(prefix="bench-reprocess-") as tmp:
        d = Path(tmp)
        if args.tracking_uri:
            os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
        else:
            from dampeml.registry.bootstrap import ensure_experiment, register_catalog

            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{d / 'mlflow.db'}"
            t0 = time.perf_counter()
            ensure_experiment(d / "artifacts")
            register_catalog(aliases=("production",), preset="small")
            print(f"registered the chain's networks (untrained, small) in {time.perf_counter() - t0:.0f} s")
        paths = make_files(d / "in", args.files, args.events)
        load_before = os.getloadavg()[0]
        load, secs, n = in_process(paths, args.batch_size)
        base = n / secs
        rows = [("in-process (1 process)", f"{load:.1f}", f"{secs:.1f}", f"{base:.1f}", "", "1.00")]
        init_ray(num_cpus=4, object_store_memory=500 * 2**20)
        try:
            for a in args.actors:
                wall, steady, n_ray = through_ray(paths, d / f"out-{a}", a, args.batch_size)
                assert n_ray == n, (n_ray, n)
                net = n / max(wall - load, 1e-9)
                row = (
                    f"Ray Data, {a} actor(s)",
                    "",
                    f"{wall:.1f}",
                    f"{net:.1f}",
                    f"{steady:.1f}",
                    f"{net / base:.2f}",
                )
                rows.append(row)
        finally:
            ray.shutdown()
        load_after = os.getloadavg()[0]
    print(
        f"\n{args.files} files x {args.events} proton events, batch {args.batch_size}, {os.cpu_count()} cores"
    )
    print(f"{'path':<26} {'load s':>7} {'wall s':>8} {'ev/s net':>9} {'ev/s steady':>12} {'ratio':>7}")
    for r in rows:
        print(f"{r[0]:<26} {r[1]:>7} {r[2]:>8} {r[3]:>9} {r[4]:>12} {r[5]:>7}")
    print(
        "in-process: load = Chain.from_registry, wall = read + chain. Ray: wall = the whole job; net = "
        "events / (wall - the in-process load time); steady = from the first to the last batch back from "
        "the actors; ratio = net / in-process"
    )
    if max(load_before, load_after) > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load_before:.1f} before, {load_after:.1f} after: the machine was busy")


if __name__ == "__main__":
    main()
