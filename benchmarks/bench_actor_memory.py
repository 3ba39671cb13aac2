"""Peak memory of each Ray process, by name, while `dampeml reprocess` runs: which workers grow.

Run: `.venv/bin/python benchmarks/bench_actor_memory.py WORK "INPUT_GLOB" OUT` with WORK holding the
registry (mlflow.db with the reference models). Samples /proc every 2 s; prints each process name's
peak resident memory split into its own (anonymous) pages and the shared ones (RssShmem: the object
store's pages a worker has touched, which count in its RSS but are the store's, bounded by its size),
and the largest actor's split at ten points of the run (benchmarks/README.md, "Scale", runs 12 and 15).
"""

import collections
import os
import subprocess
import sys
import time

from bench_scale import MEMORY_FIELDS, proc_memory, processes

if len(sys.argv) != 4:
    raise SystemExit(__doc__)
work, files, out = sys.argv[1:4]
env = {**os.environ, "RAY_ADDRESS": "", "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"}
cmd = [sys.executable, "-m", "dampeml.cli.main", "reprocess", "--input", files, "--out", out,
       "--alias", "reference", "--actors", "2"]  # fmt: skip
p = subprocess.Popen(cmd, stdout=open(out + ".log", "w"), stderr=subprocess.STDOUT, env=env, cwd=work)
t0 = time.time()
peaks: dict[str, dict[str, float]] = collections.defaultdict(lambda: dict.fromkeys(MEMORY_FIELDS, 0.0))
series = []
while p.poll() is None:
    snap: dict[str, dict[str, float]] = {}
    for pid, _, c in processes():
        if not c.startswith("ray::"):
            continue
        mem = {k: v / 2**20 for k, v in proc_memory(pid).items()}
        name = c.split()[0][:60]
        if name not in snap or mem["VmRSS"] > snap[name]["VmRSS"]:
            snap[name] = mem
    for k, mem in snap.items():
        for kind in MEMORY_FIELDS:
            peaks[k][kind] = max(peaks[k][kind], mem[kind])
    series.append((time.time() - t0, snap))
    time.sleep(2)
print("exit", p.returncode, "wall", round(time.time() - t0))
print("peak MB: resident (own anonymous pages, shared object-store pages), by process name")
for k, v in sorted(peaks.items(), key=lambda kv: -kv[1]["VmRSS"])[:8]:
    print(f"{v['VmRSS']:8.0f} ({v['RssAnon']:6.0f}, {v['RssShmem']:6.0f})  {k}")
n = len(series)  # the largest process over time (every ~10% of the run)
for i in range(0, n, max(1, n // 10)):
    t, snap = series[i]
    if snap:
        name, mem = max(snap.items(), key=lambda kv: kv[1]["VmRSS"])
        print(f"t={t:6.0f}s {name[:48]} resident {mem['VmRSS']:.0f}, own {mem['RssAnon']:.0f}, "
              f"shared {mem['RssShmem']:.0f} MB")  # fmt: skip
