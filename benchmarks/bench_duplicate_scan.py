"""The dataset build's duplicate scan: its time and the driver memory it costs, per batch size.

    .venv/bin/python benchmarks/bench_duplicate_scan.py SPEC.yaml [SPEC.yaml ...] [--batches 1e6 2e5]
        [--build OUT_DIR]

For each spec (e.g. the `bench_scale.py` build specs over 1e5, 1e6 and 1e7 produced events) and each
batch size, a fresh process runs the platform's scan (`datasets.build.find_unit_repeats` over the
spec's planned units, as `dampeml dataset build` runs it before its pipeline) and prints its wall
time and the process's peak RSS over its RSS before the scan (sampled every 0.1 s). With `--build`,
the whole build of the first spec runs too (`datasets.build.build_dataset`, the default batch), its
driver's RSS sampled every 0.25 s with the scan's and the pipeline's start and end marked.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


class Sampler:
    """The process's RSS every `period` seconds, on a thread, while in the `with` block."""

    def __init__(self, period: float):
        self.period, self.samples, self._stop = period, [], False

    def _run(self) -> None:
        while not self._stop:
            self.samples.append((time.perf_counter(), rss_mb()))
            time.sleep(self.period)

    def __enter__(self) -> Sampler:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True


def scan_once(spec_path: str, batch: int) -> None:
    import dampeml.io.datasource as datasource
    from dampeml.datasets import build
    from dampeml.datasets.spec import load_spec
    from dampeml.storage import Store

    defaults = list(datasource.scan_duplicates.__defaults__)
    defaults[-1] = batch  # batch_events
    datasource.scan_duplicates.__defaults__ = tuple(defaults)
    units, _ = build.plan_build(load_spec(spec_path), None)
    before = rss_mb()
    with Sampler(0.1) as sampler:
        t0 = time.perf_counter()
        scan = build.find_unit_repeats(Store.open(f"/tmp/bench-scan-{batch}"), units, set())
        seconds = time.perf_counter() - t0
    peak = max(r for _, r in sampler.samples)
    print(
        f"| {scan.events:,} | {batch:,} | {seconds:.1f} | {before:.0f} | +{peak - before:.0f} |", flush=True
    )


def build_once(spec_path: str, out: str) -> None:
    from dampeml.datasets import build
    from dampeml.datasets.spec import load_spec

    t0 = time.perf_counter()
    marks = []

    def marked(name: str, fn):
        def wrapper(*a, **k):
            marks.append((f"{name} start", time.perf_counter() - t0, rss_mb()))
            result = fn(*a, **k)
            marks.append((f"{name} end", time.perf_counter() - t0, rss_mb()))
            return result

        return wrapper

    build.find_unit_repeats = marked("scan", build.find_unit_repeats)
    build.run_units = marked("pipeline", build.run_units)
    with Sampler(0.25) as sampler:
        build.build_dataset(load_spec(spec_path), out)
    for name, at, rss in marks:
        print(f"- {at:6.1f} s, {name}: RSS {rss:.0f} MB")
    at, peak = max(sampler.samples, key=lambda s: s[1])
    print(f"- peak RSS {peak:.0f} MB at {at - t0:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("specs", nargs="+")
    ap.add_argument("--batches", nargs="+", type=float, default=[1e6, 2e5])
    ap.add_argument("--build", help="also build the first spec here, the driver's memory over time")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # SPEC BATCH: one scan, in this process
    ap.add_argument("--one-build", nargs=2, help=argparse.SUPPRESS)  # SPEC OUT: one build, in this process
    args = ap.parse_args()
    if args.one:
        return scan_once(args.one[0], int(float(args.one[1])))
    if args.one_build:
        return build_once(*args.one_build)
    print(
        "| events | batch | scan (s) | RSS before (MB) | peak over it (MB) |\n|---|---|---|---|---|",
        flush=True,
    )
    for spec in args.specs:
        for batch in args.batches:
            subprocess.run([sys.executable, __file__, spec, "--one", spec, str(batch)], check=True)
    if args.build:
        print(f"\nthe whole build of {args.specs[0]} (driver):", flush=True)
        subprocess.run([sys.executable, __file__, args.specs[0], "--one-build", args.specs[0], args.build],
                       check=True)  # fmt: skip


if __name__ == "__main__":
    main()
