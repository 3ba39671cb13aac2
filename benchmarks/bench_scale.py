"""Scale: the platform's own jobs at growing sizes, per-event cost, memory per process kind, accounting.

Run: `.venv/bin/python benchmarks/bench_scale.py --sizes 1e5 1e6 [--jobs production build reprocess]
[--cluster] [--work DIR]`.

For each size N it runs, as a person would, the platform's commands in subprocesses:

- production: `dampeml simulate-production` of N protons (10 GeV - 100 TeV, E^-1; shards of
  --events-per-shard events);
- build: `dampeml dataset build` of a BGO-direction spec over those files (a `files` source);
- build-hough: the same with a coarse Hough spec (its RoI around the smeared true track, as the
  small specs: no models needed), the build with the most work per event;
- reprocess: `dampeml reprocess` of those files with the models at --alias (only sizes up to
  --reprocess-max; the chain is the slow job).

With `--cluster` the same jobs are submitted (`ray job submit`, jobs/*.py) to the local
multi-node cluster of the tests (tests/cluster_harness.py: head + two workers on this machine).

Per job and size it prints wall time, events per second per core (events / wall / cores of the
machine), the same job's in-process rate measured in this run (one process, BLAS pinned to one
thread) and their ratio, the peak resident memory of each process kind (the job's driver, Ray
workers, raylet, GCS, other Ray processes; /proc sampled every 0.5 s), object-store spilling (the
raylets' logs), bytes per event on disk, files written, the time to list the output and read its
manifest, and the job's own accounting (events in = written + filtered + quarantined).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform as stdlib_platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.cluster_harness, for --cluster
PAGE = os.sysconf("SC_PAGE_SIZE")
ENERGY = (10.0, 1e5)


# ---- memory of the processes by kind ---------------------------------------------------------


def _kind(cmdline: str) -> str | None:
    """The Ray process kind of a command line; None for anything else."""
    if "gcs_server" in cmdline:
        return "gcs"
    if "raylet" in cmdline and "ray::" not in cmdline:
        return "raylet"
    if cmdline.startswith("ray::") or "default_worker.py" in cmdline:
        return "workers"
    if re.search(r"python\S* jobs/\w+\.py", cmdline):  # a submitted job's entrypoint
        return "driver"
    if "/ray/" in cmdline or "dashboard" in cmdline or "ray start" in cmdline:
        return "ray other"
    return None


def processes() -> list[tuple[int, int, str]]:
    """(pid, ppid, cmdline) of every process."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out.append((int(d), ppid, cmd))
    return out


MEMORY_FIELDS = ("VmRSS", "RssAnon", "RssShmem")


def proc_memory(pid: int) -> dict[str, int]:
    """Bytes resident (VmRSS), of which private anonymous (RssAnon) and shared memory (RssShmem: for a
    Ray worker, the object store's pages it has touched); all 0 for a process that ended."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return {k: int(fields[k].split()[0]) * 1024 for k in MEMORY_FIELDS}
    except (OSError, KeyError, IndexError, ValueError):
        return dict.fromkeys(MEMORY_FIELDS, 0)


@dataclass
class MemorySampler:
    """Peak RSS per process kind while a job runs: the largest single process and the largest sum,
    and the largest single process's private (anonymous) memory."""

    root_pid: int
    interval: float = 0.5
    peak_one: dict[str, int] = field(default_factory=dict)
    peak_sum: dict[str, int] = field(default_factory=dict)
    peak_private: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        procs = processes()
        children: dict[int, list[int]] = {}
        for pid, ppid, _ in procs:
            children.setdefault(ppid, []).append(pid)
        driver, todo = set(), [self.root_pid]
        while todo:  # the job's own process tree, up to the Ray processes it starts
            pid = todo.pop()
            driver.add(pid)
            todo += children.get(pid, [])
        sums: dict[str, int] = {}
        for pid, _, cmd in procs:
            kind = _kind(cmd) or ("driver" if pid in driver else None)
            if kind is None or (kind == "driver" and "ray job submit" in cmd):  # the submit client
                continue
            mem = proc_memory(pid)
            rss, private = mem["VmRSS"], mem["RssAnon"]
            sums[kind] = sums.get(kind, 0) + rss
            self.peak_one[kind] = max(self.peak_one.get(kind, 0), rss)
            self.peak_private[kind] = max(self.peak_private.get(kind, 0), private)
        for k, v in sums.items():
            self.peak_sum[k] = max(self.peak_sum.get(k, 0), v)

    def run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ---- running a job ---------------------------------------------------------------------------


@dataclass
class JobRun:
    job: str
    events: int
    wall: float
    memory: MemorySampler
    out: Path
    log: Path
    accounting: dict = field(default_factory=dict)
    listing_seconds: float = 0.0
    spilled: str = ""


def _spill_lines(since: float) -> str:
    """Object-store spilling reported by any raylet since `since` (the raylets' own logs)."""
    lines = []
    for log in Path(tempfile.gettempdir(), "ray").glob("session_*/logs/raylet*.out"):
        if log.stat().st_mtime < since:
            continue
        with contextlib.suppress(OSError):
            lines += [ln for ln in log.read_text(errors="replace").splitlines() if "Spilled" in ln]
    return lines[-1][-120:] if lines else ""


def run_job(job: str, args: list[str], events: int, out: Path, work: Path, cluster) -> JobRun:
    """One platform command (or, with a cluster, one submitted job), timed and sampled."""
    log = work / f"{job}-{events}.log"
    env = {**os.environ, "RAY_ADDRESS": ""} if cluster is None else {**os.environ, **cluster.env()}
    if cluster is None:
        cmd = [sys.executable, "-m", "dampeml.cli.main", *args]
    else:
        cmd = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", cluster.dashboard_url,
               "--working-dir", str(REPO), "--", "python", *args]  # fmt: skip
    t0 = time.time()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=work)
        with MemorySampler(proc.pid) as mem:
            rc = proc.wait()
    wall = time.time() - t0
    if rc != 0:
        raise SystemExit(f"{job} at {events} events failed (exit {rc}): see {log}")
    return JobRun(job, events, wall, mem, out, log, spilled=_spill_lines(t0))


def _du(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


# ---- the jobs --------------------------------------------------------------------------------


def production(n: int, work: Path, per_shard: int, cluster) -> JobRun:
    out = work / f"sim-{n}"
    common = ["--particle", "proton", "--events", str(n), "--energy-min", str(ENERGY[0]),
              "--energy-max", str(ENERGY[1]), "--out", str(out), "--events-per-shard", str(per_shard),
              "--seed", "11", "--no-progress"]  # fmt: skip
    args = ["simulate-production", *common] if cluster is None else ["jobs/simulate.py", *common]
    run = run_job("production", args, n, out, work, cluster)
    t0 = time.perf_counter()
    manifest = json.loads((out / "production.json").read_text())
    files = sorted(out.glob("*.root"))
    run.listing_seconds = time.perf_counter() - t0
    run.accounting = {"written": manifest["n_events"], "shards": manifest["n_shards"], "files": len(files)}
    return run


#: the build jobs' specs after their sources: a BGO-direction spec, and a coarse Hough one
SPEC_BODY = {
    "build": "kind: bgo-direction\nfeatures: [bgo_image]\ntargets: [track, particle]\n",
    "build-hough": "kind: stk-hough\nfeatures: [hough_hits]\ntargets: [hough_offsets, track]\n"
    "selection: {require_hough_hits: true}\nroi: {source: truth-smeared, smear_mm: 20.0, geometry: coarse}\n",
}
#: each build job's output folder prefix
BUILD_PREFIX = {"build": "ds", "build-hough": "hough"}


def spec_file(job: str, path: Path, glob: str, events_per_unit: int) -> Path:
    """The spec of build job `job` over the files of `glob`, written to `path`."""
    path.write_text(
        f"name: scale-{path.stem}\nsources:\n- type: files\n  glob: '{glob}'\n"
        f"  events_per_unit: {events_per_unit}\n{SPEC_BODY[job]}"
    )
    return path


def build(n: int, work: Path, events_per_unit: int, cluster, job: str = "build") -> JobRun:
    out = work / f"{BUILD_PREFIX[job]}-{n}"
    spec = spec_file(job, work / f"{BUILD_PREFIX[job]}-{n}.yaml", f"{work}/sim-{n}/*.root", events_per_unit)
    args = ["dataset", "build", str(spec), "--out", str(out)]
    if cluster is not None:
        args = ["jobs/build_dataset.py", str(spec), "--out", str(out)]
    run = run_job(job, args, n, out, work, cluster)
    t0 = time.perf_counter()
    manifest = json.loads((out / "manifest.json").read_text())
    markers = list((out / "_units").glob("*.json")) if (out / "_units").exists() else []
    run.listing_seconds = time.perf_counter() - t0
    acc = manifest["accounting"]
    written = sum(s["events"] for s in manifest["splits"].values())
    lost = acc["read"] - written - sum(acc["filtered"].values()) - sum(acc["quarantined"].values())
    run.accounting = {"read": acc["read"], "written": written, "unaccounted": lost, "markers": len(markers)}
    return run


def _split_tables(ds: Path) -> dict[str, object]:
    """Each split's rows in a canonical order (by run and event), for comparing two builds."""
    import pyarrow.parquet as pq

    out = {}
    for split in ("train", "val", "test"):
        files = sorted(p for p in (ds / split).rglob("*.parquet") if "_tmp" not in p.parts)
        table = pq.read_table(files) if files else None
        if table is not None:
            out[split] = table.sort_by([("run_id", "ascending"), ("event_id", "ascending")])
    return out


def _kill_halfway(args: list[str], log: Path, markers: Path, wanted: int, work: Path) -> int:
    """Run a platform command on a local Ray, SIGKILL its process group once `markers` holds `wanted`
    commit markers, stop what is left of its Ray, and return how many markers the kill left."""
    import signal

    def committed() -> int:
        return len(list(markers.glob("*.json")))

    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "dampeml.cli.main", *args], stdout=f,
                                stderr=subprocess.STDOUT, cwd=work, start_new_session=True,
                                env={**os.environ, "RAY_ADDRESS": ""})  # fmt: skip
        while proc.poll() is None and committed() < wanted:
            time.sleep(0.2)
        done = committed()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    # the killed driver's local Ray goes with it; what is left of it must not serve the rerun
    subprocess.run(
        [str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True, check=False
    )
    return done


def killed_build(n: int, work: Path) -> str:
    """Build again (a local Ray), kill the job once half the units are committed, resume it, and compare
    every split with the uninterrupted build's (run `build` first)."""
    spec, out = work / f"ds-{n}.yaml", work / f"ds-{n}-killed"
    units = len(list((work / f"ds-{n}" / "_units").glob("*.json")))
    args = ["dataset", "build", str(spec), "--out", str(out)]
    done = _kill_halfway(args, work / f"build-{n}-killed.log", out / "_units", units // 2, work)
    resumed = run_job("build", [*args, "--resume"], n, out, work, None)
    a, b = _split_tables(work / f"ds-{n}"), _split_tables(out)
    same = a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)
    rows = sum(t.num_rows for t in b.values())
    verdict = "identical to" if same else "DIFFERENT from"
    return (f"killed with {done} of {units} units committed, resumed in {resumed.wall:.0f} s: "
            f"{rows:,} rows, {verdict} the uninterrupted build")  # fmt: skip


def _events_table(out: Path):
    """A reprocessing job's output rows in a canonical order (by run and event)."""
    import pyarrow.parquet as pq

    table = pq.read_table(sorted((out / "events").glob("*.parquet")))
    return table.sort_by([("run_id", "ascending"), ("event_id", "ascending")])


def killed_reprocess(n: int, work: Path, alias: str, actors: int) -> str:
    """Reprocess again (a local Ray), kill the job once half the input files are committed, run it
    again (it skips what was committed) and compare every row with the uninterrupted job's."""
    out = work / f"reco-{n}-killed"
    args = ["reprocess", "--input", f"{work}/sim-{n}/*.root", "--out", str(out), "--alias", alias,
            "--actors", str(actors)]  # fmt: skip
    files = len(list((work / f"sim-{n}").glob("*.root")))
    done = _kill_halfway(args, work / f"reprocess-{n}-killed.log", out / "_files", max(1, files // 2), work)
    resumed = run_job("reprocess", args, n, out, work, None)
    a, b = _events_table(work / f"reco-{n}"), _events_table(out)
    head = (
        f"killed with {done} of {files} files committed, rerun in {resumed.wall:.0f} s, {b.num_rows:,} rows"
    )
    if a.equals(b):
        return f"{head}, identical to the uninterrupted job's"
    differ = []
    for name in a.column_names:
        if a[name].equals(b[name]):
            continue
        try:
            x, y = (np.asarray(t[name].to_numpy(zero_copy_only=False), dtype=np.float64) for t in (a, b))
        except (TypeError, ValueError):  # a text column
            differ.append(f"{name} (text)")
        else:
            rows = int((np.nan_to_num(x, nan=1e300) != np.nan_to_num(y, nan=1e300)).sum())
            differ.append(f"{name} in {rows} rows (largest {np.nanmax(np.abs(x - y)):.2g})")
    same_ids = a.select(["run_id", "event_id"]).equals(b.select(["run_id", "event_id"]))
    return f"{head}, identities {'identical' if same_ids else 'DIFFERENT'}; differing: " + "; ".join(differ)


def reprocess(n: int, work: Path, alias: str, actors: int, cluster) -> JobRun:
    out = work / f"reco-{n}"
    common = ["--input", f"{work}/sim-{n}/*.root", "--out", str(out), "--alias", alias,
              "--actors", str(actors)]  # fmt: skip
    args = ["reprocess", *common] if cluster is None else ["jobs/reprocess.py", *common]
    run = run_job("reprocess", args, n, out, work, cluster)
    t0 = time.perf_counter()
    summary = json.loads((out / "summary.json").read_text())
    run.listing_seconds = time.perf_counter() - t0
    tot = summary["totals"]
    run.accounting = {k: tot[k] for k in tot if isinstance(tot[k], int)}
    return run


# ---- in-process references -------------------------------------------------------------------


def one_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1)


def inprocess_rates(
    work: Path, n: int, alias: str, with_chain: bool, tag: str = "inprocess"
) -> dict[str, float]:
    """Events per second of the jobs' work in this process on one core: simulate + write a file,
    build the BGO and the Hough units of that file, run the chain on its events. Measured before and
    after the jobs (`tag` keeps their files apart): this machine's speed moves by 10-35% within an
    hour, so a ratio against one measurement is known no better than that."""
    from dampeml.datasets.process import process_unit
    from dampeml.datasets.spec import load_spec
    from dampeml.datasets.units import plan_units, planned_particle_counts
    from dampeml.detector.simulation import SimulationConfig, simulate
    from dampeml.io.root_writer import write_event_file
    from dampeml.storage import Store

    os.environ["TF_NUM_INTRAOP_THREADS"] = os.environ["TF_NUM_INTEROP_THREADS"] = "1"  # before TF starts
    rates = {}
    ref = work / tag
    ref.mkdir(exist_ok=True)
    with one_thread():
        t0 = time.perf_counter()
        branches, meta = simulate(SimulationConfig("proton", n, *ENERGY, seed=5))
        write_event_file(ref / "ref.root", branches, meta)
        rates["production"] = n / (time.perf_counter() - t0)
        for job, prefix in BUILD_PREFIX.items():
            spec = load_spec(spec_file(job, ref / f"{prefix}.yaml", f"{ref}/*.root", 20000))
            store = Store.open(str(ref / prefix))
            t0 = time.perf_counter()
            units, _ = plan_units(spec)
            context = {"planned_particles": planned_particle_counts(units)}
            read = sum(process_unit(u, spec, store, context)["read"] for u in units)
            rates[job] = read / (time.perf_counter() - t0)
        if with_chain:
            import numpy as np
            import pyarrow as pa
            import pyarrow.parquet as pq

            from dampeml.io.root_reader import read_events
            from dampeml.reconstruction.chain import Chain

            chain = Chain.from_registry(alias=alias, flight=False)
            chain.run({k: v[:500] for k, v in branches.items()})  # warm-up
            t0 = time.perf_counter()  # as the job: read the file, run the chain in batches, write Parquet
            for start in range(0, n, 2000):
                events = read_events(ref / "ref.root", start, min(start + 2000, n))
                out = chain.run(events)
                pq.write_table(
                    pa.table({k: np.asarray(v) for k, v in out.items()}), ref / f"reco-{start}.parquet"
                )
            rates["reprocess"] = n / (time.perf_counter() - t0)
    return rates


def build_overhead(work: Path, repeats: int = 3) -> str:
    """The fixed cost of a small build: 8 units of 25 events through the platform's build (a Ray Data
    pipeline, `build_dataset`) and the same units as plain Ray tasks, on one warm local Ray."""
    import ray

    from dampeml.datasets.build import build_dataset
    from dampeml.datasets.process import process_unit
    from dampeml.datasets.spec import load_spec
    from dampeml.datasets.units import plan_units, planned_particle_counts
    from dampeml.detector.simulation import SimulationConfig, simulate
    from dampeml.io.root_writer import write_event_file
    from dampeml.runtime import init_ray
    from dampeml.storage import Store

    ref = work / "tiny"
    ref.mkdir(exist_ok=True)
    write_event_file(ref / "tiny.root", *simulate(SimulationConfig("proton", 200, *ENERGY, seed=6)))
    spec = load_spec(spec_file("build", ref / "tiny.yaml", f"{ref}/*.root", 25))
    init_ray(num_cpus=4)
    process = ray.remote(num_cpus=1)(process_unit)
    data, tasks = [], []
    for i in range(repeats + 1):  # the first of each warms the workers up
        t0 = time.perf_counter()
        build_dataset(spec, str(ref / f"tiny-{i}"))
        data.append(time.perf_counter() - t0)
        store = Store.open(str(ref / f"tiny-tasks-{i}"))
        units, _ = plan_units(spec)
        context = {"planned_particles": planned_particle_counts(units)}
        t0 = time.perf_counter()
        ray.get([process.remote(u, spec, store, context) for u in units])
        tasks.append(time.perf_counter() - t0)
    ray.shutdown()
    a, b = statistics.median(data[1:]), statistics.median(tasks[1:])
    return (f"{len(units)} units of 25 events, median of {repeats} warm runs: the platform's build "
            f"(Ray Data, with its checks, markers and manifest) {a:.2f} s, the units alone as Ray tasks "
            f"{b:.2f} s (first runs {data[0]:.2f} / {tasks[0]:.2f} s)")  # fmt: skip


def warm_builds(sizes: list[int], work: Path, events_per_unit: int) -> dict[int, float]:
    """Wall seconds of the BGO build of each size's files in one driver whose Ray and workers are
    already up (a small build first), as `dampeml pipeline run` builds its datasets: what a build costs
    without the process and Ray start-up that a separate `dampeml dataset build` pays."""
    import ray

    from dampeml.datasets.build import build_dataset
    from dampeml.datasets.spec import load_spec
    from dampeml.runtime import init_ray

    init_ray()
    warm = load_spec(
        spec_file("build", work / "warm-up.yaml", f"{work}/sim-{min(sizes)}/*.root", events_per_unit)
    )
    build_dataset(warm, str(work / "warm-up"), limit_events=2000)
    walls = {}
    for n in sizes:
        spec = load_spec(
            spec_file("build", work / f"warm-{n}.yaml", f"{work}/sim-{n}/*.root", events_per_unit)
        )
        t0 = time.perf_counter()
        build_dataset(spec, str(work / f"warm-{n}"))
        walls[n] = time.perf_counter() - t0
        print(f"  build in a warm driver {n:,}: {walls[n]:.0f} s", flush=True)
    ray.shutdown()
    return walls


# ---- report ----------------------------------------------------------------------------------


def _mb(b: int) -> str:
    return f"{b / 2**20:.0f}"


def mean_rates(bracket: list[dict[str, float]]) -> dict[str, float]:
    """Each job's in-process rate: the mean of its measurements before and (where measured) after the jobs."""
    return {k: statistics.mean(b[k] for b in bracket) for k in bracket[0]} if bracket else {}


def print_rates(when: str, rates: dict[str, float]) -> None:
    print(
        f"in-process events/s/core, {when}: " + ", ".join(f"{k} {v:,.0f}" for k, v in rates.items()),
        flush=True,
    )


def print_tables(runs: list[JobRun], bracket: list[dict[str, float]], cores: int) -> None:
    """`bracket`: the in-process rates measured before the jobs and, where measured, after them."""
    rates = mean_rates(bracket)
    print("\n## Throughput\n")
    print(
        f"Per core = events / wall time / {cores} cores; in-process = one process, one BLAS thread, "
        "the mean of its measurements before and after the jobs (the ratio against each in brackets).\n"
    )
    print("| job | events | wall (s) | events/s/core through Ray | in-process events/s/core "
          "| Ray / in-process | bytes/event | files | listing + manifest (s) | accounting |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        per_core = r.events / r.wall / cores
        ref = rates.get(r.job)
        size, nfiles = _du(r.out)
        ratio = f"**{per_core / ref:.2f}**" if ref else "-"
        if ref and len(bracket) > 1:
            ratio += " (" + " / ".join(f"{per_core / b[r.job]:.2f}" for b in bracket) + ")"
        acc = ", ".join(f"{k} {v}" for k, v in r.accounting.items())
        print(f"| {r.job} | {r.events:,} | {r.wall:.0f} | {per_core:,.0f} | {ref or 0:,.0f} | {ratio} "
              f"| {size / r.events:,.0f} | {nfiles} | {r.listing_seconds:.2f} | {acc} |")  # fmt: skip
    from dampeml.pipeline import capacity

    rates_of = {"production": capacity.PRODUCTION, "build": capacity.BUILD["bgo-direction"],
                "build-hough": capacity.BUILD.get("stk-hough"),
                "reprocess": capacity.REPROCESS_SMALL}  # fmt: skip
    print("\n## The capacity plan's prediction (dampeml.pipeline.capacity) against the measurement\n")
    print("| job | events | predicted wall (s) | measured (s) | measured / predicted | rate from |")
    print("|---|---|---|---|---|---|")
    for r in runs:
        rate = rates_of[r.job]
        if rate is None:
            print(f"| {r.job} | {r.events:,} | - | {r.wall:.0f} | - | no rate in the plan |")
            continue
        predicted = capacity.predicted_wall_s(rate, r.events, cores)
        print(f"| {r.job} | {r.events:,} | {predicted:.0f} | {r.wall:.0f} | {r.wall / predicted:.2f} "
              f"| {rate.source} |")  # fmt: skip
    kinds = ("driver", "workers", "raylet", "gcs", "ray other")
    print("\n## Peak resident memory (MB): largest single process / all processes of the kind")
    print("(largest single process's private, anonymous memory in brackets)\n")
    print("| job | events | " + " | ".join(kinds) + " | object-store spilling |")
    print("|---|---|" + "---|" * (len(kinds) + 1))
    for r in runs:
        cells = [
            f"{_mb(r.memory.peak_one.get(k, 0))} / {_mb(r.memory.peak_sum.get(k, 0))} "
            f"({_mb(r.memory.peak_private.get(k, 0))})"
            for k in kinds
        ]
        print(f"| {r.job} | {r.events:,} | " + " | ".join(cells) + f" | {r.spilled or 'none'} |")


def uninterrupted(n: int, args: argparse.Namespace, work: Path, cluster) -> list[JobRun]:
    """The jobs of `args.jobs` at size n, each run once to the end."""
    runs = []
    if "production" in args.jobs:
        runs.append(production(n, work, args.events_per_shard, cluster))
    for job in ("build", "build-hough"):
        if job in args.jobs:
            runs.append(build(n, work, args.events_per_unit, cluster, job))
    if "reprocess" in args.jobs and n <= args.reprocess_max:
        runs.append(reprocess(n, work, args.alias, args.actors, cluster))
    for r in runs:
        print(f"  {r.job} {r.events:,}: {r.wall:.0f} s", flush=True)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e5, 1e6], help="events per run")
    ap.add_argument("--jobs", nargs="+", default=["production", "build", "reprocess"],
                    choices=["production", "build", "build-hough", "reprocess"])  # fmt: skip
    ap.add_argument("--work", type=Path, help="where the runs write (default: a temporary folder, removed)")
    ap.add_argument("--cluster", action="store_true", help="submit to a local multi-node Ray cluster")
    ap.add_argument("--events-per-shard", type=int, default=20000)
    ap.add_argument("--events-per-unit", type=int, default=20000)
    ap.add_argument("--alias", default="reference", help="registry alias of the chain's models (reprocess)")
    ap.add_argument("--actors", type=int, default=os.cpu_count() or 1, help="reprocessing's chain actors")
    ap.add_argument("--reprocess-max", type=float, default=1e5, help="largest size to reprocess")
    ap.add_argument("--kill-build-at", type=float, help="also kill and resume the build at this size")
    ap.add_argument("--overhead", action="store_true", help="also the fixed cost of a small build")
    ap.add_argument(
        "--warm-build",
        action="store_true",
        help="also each size's BGO build in one warm driver (no start-up)",
    )
    ap.add_argument(
        "--kill-reprocess-at", type=float, help="also kill and rerun the reprocessing at this size"
    )
    ap.add_argument("--inprocess-events", type=int, default=20000, help="events of the in-process references")
    ap.add_argument(
        "--killed-only",
        action="store_true",
        help="only the kill-and-rerun comparisons, against the outputs an earlier run left in --work",
    )
    args = ap.parse_args()
    if args.killed_only and not args.work:
        raise SystemExit("--killed-only compares with an earlier run's outputs: give its --work")
    cores = os.cpu_count() or 1
    print(f"machine: {stdlib_platform.processor() or stdlib_platform.machine()}, {cores} cores, "
          f"{os.sysconf('SC_PHYS_PAGES') * PAGE / 2**30:.0f} GiB")  # fmt: skip
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scale-")))
        work.mkdir(parents=True, exist_ok=True)
        cluster = None
        if args.cluster:
            from tests.cluster_harness import LocalCluster

            cluster = stack.enter_context(LocalCluster(work / "cluster"))  # __enter__ starts it
        with_chain = "reprocess" in args.jobs
        if with_chain:  # a private registry holding the shipped reference models, for jobs and this process
            from dampeml.pipeline.demo import REFERENCE_ZOO

            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
            cmd = [sys.executable, "-m", "dampeml.cli.main", "models", "import-zoo", str(REFERENCE_ZOO)]
            subprocess.run(cmd, check=True, cwd=work, capture_output=True)
        bracket = []
        if not args.killed_only:
            bracket.append(inprocess_rates(work, args.inprocess_events, args.alias, with_chain))
            print_rates("before", bracket[0])
        runs, resumes = [], []
        for size in args.sizes:
            n = int(size)
            if not args.killed_only:
                runs += uninterrupted(n, args, work, cluster)
            if (
                args.kill_reprocess_at
                and n == int(args.kill_reprocess_at)
                and "reprocess" in args.jobs
                and not cluster
            ):
                resumes.append(
                    f"reprocessing, {n:,} events: {killed_reprocess(n, work, args.alias, args.actors)}"
                )
                print(f"  {resumes[-1]}", flush=True)
            if args.kill_build_at and n == int(args.kill_build_at) and "build" in args.jobs and not cluster:
                resumes.append(f"build, {n:,} events: {killed_build(n, work)}")
                print(f"  {resumes[-1]}", flush=True)
        if runs:
            bracket.append(
                inprocess_rates(work, args.inprocess_events, args.alias, with_chain, "inprocess-after")
            )
            print_rates("after", bracket[1])
            print_tables(runs, bracket, cores)
        if args.warm_build:
            walls = warm_builds([int(x) for x in args.sizes], work, args.events_per_unit)
            ref = mean_rates(bracket).get("build")
            print("\n## BGO builds in a warm driver (Ray and its workers up, as in `dampeml pipeline run`)\n")
            print("| events | wall (s) | events/s/core | Ray / in-process |\n|---|---|---|---|")
            for n, wall in walls.items():
                per_core = n / wall / cores
                print(f"| {n:,} | {wall:.1f} | {per_core:,.0f} | {f'{per_core / ref:.2f}' if ref else '-'} |")
        if args.overhead:
            print(f"\n## Small builds\n\n{build_overhead(work)}")
        if resumes:
            print("\n## Killed and resumed\n")
            print("\n".join(f"- {r}" for r in resumes))


if __name__ == "__main__":
    main()
