"""Dataset platform throughput: build rates, bytes per event on disk, training-feed rates.

Run: `.venv/bin/python benchmarks/bench_datasets.py [--events 8000] [--limit-events 1000]`.
Starts a local Ray with 4 logical CPUs (`init_ray(num_cpus=4)`: Ray Data needs CPUs beside
its consumer), whatever the number of cores. Prints:

1. Build rate of a BGO dataset (the content of datasets/bgo-direction-low-small.yaml, scaled
   to --events): (a) from ROOT files simulated beforehand into a temp dir (a `files`
   source), (b) simulated inside the pipeline (a `simulation` source), each through
   `build_dataset` (Ray Data) and in-process (`process_unit` on the units of `plan_units`,
   one process, BLAS pinned to one thread), side by side. Per core = events read / (wall
   time x cores used); cores used is 1 in-process and min(cores of the machine, units) for
   Ray. The measured busy cores (system-wide, from /proc/stat) are printed beside it.
2. Bytes per event on disk (Parquet shards, from the manifest) for every shipped
   `datasets/*-small.yaml`, built with --limit-events; target < 2 KB/event for datasets
   that store BGO images or Hough hits.
3. Training feed: batches of the network inputs per second through Ray Data
   (`network_dataset(uri, "train").iter_batches(batch_size=32)` and `.to_tf(...)`) for the
   BGO dataset of (1) and a stk-hough-precise-small dataset, against the same arrays fed
   from memory (numpy slices, `tf.data.Dataset.from_tensor_slices`). Each Ray epoch runs the
   pipeline again (read + render), as training does. Ray rows: as shipped (Ray 2.60's
   default Parquet reader, "datasource V2"), with the V1 reader (`DataContext.
   use_datasource_v2 = False`), and materialised once (iteration cost alone).

Hough images rendered per second per core: see benchmarks/bench_features.py.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import os
import platform as stdlib_platform
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from dampeml.datasets.build import build_dataset
from dampeml.datasets.loader import network_dataset
from dampeml.datasets.process import load_unit_events, process_unit
from dampeml.datasets.spec import DatasetSpec, load_spec
from dampeml.datasets.units import plan_units, planned_particle_counts
from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.io.root_writer import write_event_file
from dampeml.runtime import init_ray
from dampeml.storage import Store

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported (feed section)

REPO = Path(__file__).resolve().parents[1]
BGO_SPEC = REPO / "datasets" / "bgo-direction-low-small.yaml"
HOUGH_SPEC = REPO / "datasets" / "stk-hough-precise-small.yaml"
RAY_CPUS = 4
BATCH = 32
TARGET_BYTES = 2000  # issue target: < 2 KB/event for the BGO and Hough-hit datasets
CORES = os.cpu_count() or 1


def one_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (Linux); (0, 0) elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


class Timer:
    """Wall time and system-wide busy cores (busy CPU time / wall time) of a `with` block."""

    def __enter__(self) -> Timer:
        self._busy0, _ = _cpu_jiffies()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        busy1, _ = _cpu_jiffies()
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.busy_cores = (busy1 - self._busy0) / tick / self.wall if self.wall > 0 else float("nan")


def machine_load(seconds: float = 2.0) -> float:
    """Busy cores, system-wide, while this process sleeps: what other work is taking."""
    with Timer() as t:
        time.sleep(seconds)
    return t.busy_cores


# ---------------------------------------------------------------- 1. build rates


def scaled_bgo_spec(events: int) -> dict:
    """bgo-direction-low-small, every particle's events scaled so that they add up to `events`."""
    raw = yaml.safe_load(BGO_SPEC.read_text())
    src = raw["sources"][0]
    total = sum(p["events"] for p in src["particles"].values())
    for p in src["particles"].values():
        p["events"] = max(1, round(p["events"] * events / total))
    raw["name"] = f"{raw['name']}-bench"
    return raw


def write_spec(spec: dict, path: Path) -> DatasetSpec:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_spec(path)


def simulate_files(sim_spec: dict, out_dir: Path) -> float:
    """The simulation source's events as one ROOT file per particle; returns the seconds it took."""
    src = sim_spec["sources"][0]
    out_dir.mkdir(parents=True)
    t = time.perf_counter()
    for i, (particle, r) in enumerate(src["particles"].items()):
        cfg = SimulationConfig(
            particle,
            r["events"],
            float(r["energy_min"]),
            float(r["energy_max"]),
            r.get("spectrum_index", 1.0),
            seed=src["seed"] * 10 + i,
        )
        branches, metadata = simulate(cfg)
        write_event_file(out_dir / f"{particle}.root", branches, metadata)
    return time.perf_counter() - t


def files_spec(sim_spec: dict, file_dir: Path) -> dict:
    src = sim_spec["sources"][0]
    spec = {k: v for k, v in sim_spec.items() if k != "sources"}
    spec["name"] = sim_spec["name"] + "-files"
    spec["sources"] = [
        {"type": "files", "glob": str(file_dir / "*.root"), "events_per_unit": src["events_per_unit"]}
    ]
    return spec


def build_with_ray(spec: DatasetSpec, out: Path, limit_events: int | None = None) -> tuple[Timer, dict]:
    with Timer() as t:
        summary = build_dataset(spec, str(out), limit_events=limit_events)
    return t, summary.manifest


def build_in_process(spec: DatasetSpec, out: Path) -> tuple[Timer, int, int]:
    """`process_unit` on every planned unit in this process; returns timer, events read, units."""
    store = Store.open(str(out))
    with one_thread(), Timer() as t:
        units, _bad = plan_units(spec)
        context = {"planned_particles": planned_particle_counts(units)}
        n_read = sum(process_unit(u, spec, store, context)["read"] for u in units)
    return t, n_read, len(units)


def load_only(spec: DatasetSpec) -> Timer:
    """Reading (or simulating) the units' events alone, in-process: the share of the build it takes."""
    with one_thread(), Timer() as t:
        for u in plan_units(spec)[0]:
            load_unit_events(u)
    return t


def bench_build(tmp: Path, events: int) -> tuple[list[tuple], Path]:
    """Rows of the build table, and the Ray-built simulation-source dataset (for the feed)."""
    sim_raw = scaled_bgo_spec(events)
    sim = write_spec(sim_raw, tmp / "bgo-sim.yaml")
    t_files = simulate_files(sim_raw, tmp / "root-files")
    files = write_spec(files_spec(sim_raw, tmp / "root-files"), tmp / "bgo-files.yaml")
    print(f"  simulated {events} events into ROOT files in {t_files:.1f} s (not counted below)")

    # Ray warm-up: worker processes start and import dampeml on the first pipeline
    with Timer() as warm:
        build_dataset(sim, str(tmp / "warm-up"), limit_events=200)
    print(f"  Ray warm-up build (200 events, workers starting): {warm.wall:.1f} s (not counted below)")
    with Timer() as tiny:
        small = build_dataset(sim, str(tmp / "fixed-cost"), limit_events=len(plan_units(sim)[0]))
    print(
        f"  Ray fixed cost: {small.units_total} units of ~1 event each build in {tiny.wall:.2f} s "
        f"(busy {tiny.busy_cores:.2f} cores)"
    )

    rows = []
    sim_out = tmp / "bgo-sim-ray"
    for label, spec in (("ROOT files", files), ("simulation", sim)):
        tag = label.split()[0].lower()
        t_ray, manifest = build_with_ray(spec, tmp / f"bgo-{tag}-ray" if tag == "root" else sim_out)
        n_read, n_units = manifest["accounting"]["read"], manifest["units"]
        cores_ray = min(CORES, n_units)
        t_in, n_in, _ = build_in_process(spec, tmp / f"bgo-{tag}-inproc")
        t_load = load_only(spec)
        assert n_in == n_read, (n_in, n_read)
        per_core_ray = n_read / (t_ray.wall * cores_ray)
        per_core_in = n_read / t_in.wall
        rows.append(
            (
                label,
                n_read,
                n_units,
                manifest["bytes_per_event"],
                t_ray,
                cores_ray,
                per_core_ray,
                t_in,
                per_core_in,
                t_load.wall / t_in.wall,
            )
        )
    return rows, sim_out


def print_build(rows: list[tuple]) -> None:
    print(
        f"{'source':>11} {'events':>7} {'units':>5} | {'Ray wall s':>10} {'cores':>5} {'busy':>5} "
        f"{'ev/s/core':>10} | {'in-proc s':>9} {'busy':>5} {'ev/s/core':>10} | {'Ray/in-proc':>11} "
        f"{'load share':>10} {'B/event':>7}"
    )
    for label, n, units, bpe, t_ray, cores, pc_ray, t_in, pc_in, load_share in rows:
        print(
            f"{label:>11} {n:>7} {units:>5} | {t_ray.wall:>10.2f} {cores:>5} {t_ray.busy_cores:>5.2f} "
            f"{pc_ray:>10,.0f} | {t_in.wall:>9.2f} {t_in.busy_cores:>5.2f} {pc_in:>10,.0f} | "
            f"{pc_ray / pc_in:>11.2f} {load_share:>10.0%} {bpe:>7,.0f}"
        )
    print(
        "  per core = events read / (wall x cores): in-process 1 core, Ray min(machine cores, units);"
        "\n  busy = CPU-seconds used system-wide / wall (all processes, from /proc/stat);"
        "\n  Ray/in-proc = per-core rate ratio (1.0 = no overhead); load share = share of the in-process"
        "\n  time spent reading the ROOT files / simulating (timed separately on the same units);"
        "\n  B/event = Parquet bytes on disk per event written (Ray build)"
    )


# ---------------------------------------------------------------- 2. bytes per event


def bench_sizes(tmp: Path, limit_events: int) -> dict[str, Path]:
    """Build every shipped small spec; print bytes per event; return the built datasets by name."""
    print(f"{'spec':>26} {'kind':>17} {'written':>7} {'build s':>7} {'B/event':>8}  target < 2 KB")
    built = {}
    for path in sorted(glob.glob(str(REPO / "datasets" / "*-small.yaml"))):
        spec = load_spec(path)
        if spec.roi is not None and spec.roi.source == "model":
            print(f"{spec.name:>26} {spec.kind:>17}  skipped: roi.source 'model' cannot be built yet")
            continue
        out = tmp / "sizes" / spec.name
        t, manifest = build_with_ray(spec, out, limit_events)
        bpe = manifest["bytes_per_event"]
        targeted = "bgo_image" in spec.features or "hough_hits" in spec.features
        verdict = ("met" if bpe is not None and bpe < TARGET_BYTES else "NOT met") if targeted else "(none)"
        bpe_s = f"{bpe:,.0f}" if bpe is not None else "-"
        print(
            f"{spec.name:>26} {spec.kind:>17} {manifest['accounting']['written']:>7} {t.wall:>7.1f} "
            f"{bpe_s:>8}  {verdict}"
        )
        built[spec.name] = out
    print(
        "  bytes = Parquet shards (zstd) of all splits / events written; target applies to datasets"
        "\n  storing BGO images or Hough hits (raw STK clusters: no target)"
    )
    return built


# ---------------------------------------------------------------- 3. training feed


def _timed_epochs(epoch_fn, min_seconds: float, min_epochs: int = 1) -> tuple[float, int]:
    """Batches per second over whole epochs (after one warm-up epoch), for at least min_seconds."""
    epoch_fn()
    batches, epochs, t0 = 0, 0, time.perf_counter()
    while True:
        batches += epoch_fn()
        epochs += 1
        dt = time.perf_counter() - t0
        if dt >= min_seconds and epochs >= min_epochs:
            return batches / dt, epochs


@contextlib.contextmanager
def parquet_datasource_v2(enabled: bool):
    """Ray Data's Parquet reader: V2 (Ray 2.60's default) or the V1 one, for datasets made inside."""
    import ray

    ctx = ray.data.DataContext.get_current()
    before = ctx.use_datasource_v2
    ctx.use_datasource_v2 = enabled
    try:
        yield
    finally:
        ctx.use_datasource_v2 = before


def bench_feed(name: str, uri: Path, min_seconds: float) -> None:
    """Rows: Ray Data feeds (as shipped, with the V1 Parquet reader, materialised) vs memory."""
    ds = network_dataset(str(uri), "train")  # as shipped: Ray 2.60 defaults
    with parquet_datasource_v2(False):
        ds_v1 = network_dataset(str(uri), "train")

    def iter_epoch(d) -> int:
        return sum(1 for _ in d.iter_batches(batch_size=BATCH, batch_format="numpy"))

    rows: list[tuple[str, str, float, int, float]] = []  # label, reference label, rate, epochs, busy

    def measure(label: str, reference: str, epoch_fn) -> None:
        with Timer() as t:
            rate, epochs = _timed_epochs(epoch_fn, min_seconds)
        rows.append((label, reference, rate, epochs, t.busy_cores))

    numpy_label, tf_label = "numpy slices (memory)", "tf.data from_tensor_slices"
    measure("Ray iter_batches, as shipped", numpy_label, lambda: iter_epoch(ds))
    measure("Ray iter_batches, V1 reader", numpy_label, lambda: iter_epoch(ds_v1))
    materialized = ds_v1.materialize()
    measure("Ray iter_batches, materialised", numpy_label, lambda: iter_epoch(materialized))

    # the same arrays, once, in memory
    parts = list(materialized.iter_batches(batch_size=None, batch_format="numpy"))
    x = np.concatenate([p["x"] for p in parts])
    y = np.concatenate([p["y"] for p in parts])
    del parts
    n = len(x)

    def numpy_epoch() -> int:
        k = 0
        for s in range(0, n, BATCH):
            xb, yb = x[s : s + BATCH], y[s : s + BATCH]  # views, as Ray hands out slices of a block
            k += xb.shape[0] > 0 and yb.shape[0] > 0
        return k

    measure(numpy_label, "", numpy_epoch)
    try:
        import tensorflow as tf

        def tf_epoch(d) -> int:
            return sum(1 for _ in d)

        kw = {"feature_columns": "x", "label_columns": "y", "batch_size": BATCH}
        tf_shipped, tf_v1 = ds.to_tf(**kw), ds_v1.to_tf(**kw)
        measure("Ray to_tf, as shipped", tf_label, lambda: tf_epoch(tf_shipped))
        measure("Ray to_tf, V1 reader", tf_label, lambda: tf_epoch(tf_v1))
        tf_mem = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).prefetch(2)
        measure(tf_label, "", lambda: tf_epoch(tf_mem))
    except Exception as exc:  # report it, keep the rest of the table
        rows.append((f"to_tf failed: {type(exc).__name__}: {exc}"[:80], "", float("nan"), 0, float("nan")))

    print(
        f"  {name}: {n} train events, x {x.shape[1:]} {x.dtype} "
        f"({x[0].nbytes:,} B/event in memory, {x.nbytes / 2**20:,.0f} MiB in all)"
    )
    print(f"  {'feed':>31} {'batches/s':>10} {'events/s':>11} {'epochs':>6} {'busy':>5} {'memory/this':>11}")
    by_label = {r[0]: r[2] for r in rows}
    for label, reference, rate, epochs, busy in rows:
        ratio = f"x{by_label[reference] / rate:,.1f}" if reference in by_label else ""
        print(f"  {label:>31} {rate:>10,.1f} {rate * BATCH:>11,.0f} {epochs:>6} {busy:>5.2f} {ratio:>11}")


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=8000, help="events of the BGO build-rate dataset")
    ap.add_argument("--limit-events", type=int, default=1000, help="events per small spec (bytes/event)")
    ap.add_argument("--feed-seconds", type=float, default=3.0, help="minimum timing per feed row")
    ap.add_argument("--skip", choices=["build", "sizes", "feed"], action="append", default=[])
    args = ap.parse_args()
    print(
        f"machine: {stdlib_platform.processor() or stdlib_platform.machine()}, {CORES} cores, "
        f"python {stdlib_platform.python_version()}, numpy {np.__version__}, "
        f"Ray logical CPUs {RAY_CPUS}"
    )
    idle_load = machine_load()
    print(f"load before the run: {idle_load:.2f} cores busy (1-min load average {os.getloadavg()[0]:.2f})")
    if idle_load > 0.2:
        print("WARNING: other processes are using the CPUs: the rates below are not reliable")
    init_ray(num_cpus=RAY_CPUS, logging_level=logging.WARNING)
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)

    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-datasets-") as d:
        tmp = Path(d)
        bgo_uri = None
        if "build" not in args.skip:
            print(f"\n1. build rate, bgo-direction-low-small content scaled to {args.events} events")
            rows, bgo_uri = bench_build(tmp, args.events)
            print_build(rows)
        built = {}
        if "sizes" not in args.skip:
            print(f"\n2. bytes per event on disk, small specs built with --limit-events {args.limit_events}")
            built = bench_sizes(tmp, args.limit_events)
        if "feed" not in args.skip:
            print(f"\n3. training feed, batches of {BATCH} of the network inputs (train split)")
            if bgo_uri is None:
                bgo_uri = tmp / "feed-bgo"
                build_dataset(write_spec(scaled_bgo_spec(args.events), tmp / "b.yaml"), str(bgo_uri))
            hough_uri = built.get("stk-hough-precise-small")
            if hough_uri is None:
                hough_uri = tmp / "feed-hough"
                build_dataset(load_spec(HOUGH_SPEC), str(hough_uri), limit_events=args.limit_events)
            bench_feed("BGO (bgo-direction-low-small content)", bgo_uri, args.feed_seconds)
            bench_feed("Hough (stk-hough-precise-small)", hough_uri, args.feed_seconds)
            print(
                "  rates over whole epochs after a warm-up epoch; busy = cores busy system-wide;"
                "\n  memory/this = how many times faster the same arrays come from memory (numpy"
                "\n  views for the iter_batches rows, tf.data from_tensor_slices for the to_tf rows)"
            )
    print("\nHough images rendered per second per core: benchmarks/bench_features.py")
    print(f"total {time.perf_counter() - t_all:.0f} s")
    ray.shutdown()
    idle_load = machine_load()
    print(f"load after the run: {idle_load:.2f} cores busy (the machine should be idle again)")


if __name__ == "__main__":
    main()
