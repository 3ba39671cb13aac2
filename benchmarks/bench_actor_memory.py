"""Peak memory of each Ray process, by name, while `dampeml reprocess` runs: which workers grow.

Run: `.venv/bin/python benchmarks/bench_actor_memory.py WORK "INPUT_GLOB" OUT` with WORK holding the
registry (mlflow.db with the reference models). Samples /proc every 2 s; prints each process name's
peak resident memory split into its own (anonymous) pages and the shared ones (RssShmem: the object
store's pages a worker has touched, which count in its RSS but are the store's, bounded by its size),
and the largest actor's split at ten points of the run (benchmarks/README.md, "Scale", runs 12 and 15).
"""

import collections
import glob
import os
import subprocess
import sys
import time

work = sys.argv[1]
files = sys.argv[2]
out = sys.argv[3]
env = {**os.environ, "RAY_ADDRESS": "", "MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"}
cmd = [
    sys.executable,
    "-m",
    "dampeml.cli.main",
    "reprocess",
    "--input",
    files,
    "--out",
    out,
    "--alias",
    "reference",
    "--actors",
    "2",
]
p = subprocess.Popen(cmd, stdout=open(out + ".log", "w"), stderr=subprocess.STDOUT, env=env, cwd=work)
t0 = time.time()
KINDS = ("VmRSS", "RssAnon", "RssShmem")
peaks: dict[str, dict[str, float]] = collections.defaultdict(lambda: dict.fromkeys(KINDS, 0.0))
series = []


def status(d: str) -> dict[str, float]:
    rows = (row.split() for row in open(d + "/status"))
    return {r[0].rstrip(":"): int(r[1]) / 1024 for r in rows if r and r[0].rstrip(":") in KINDS}


while p.poll() is None:
    snap: dict[str, dict[str, float]] = {}
    for d in glob.glob("/proc/[0-9]*"):
        try:
            c = open(d + "/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            if not c.startswith("ray::"):
                continue
            mem = status(d)
        except (OSError, IndexError, ValueError):  # the process ended while read
            continue
        name = c.split()[0][:60]
        if name not in snap or mem["VmRSS"] > snap[name]["VmRSS"]:
            snap[name] = mem
    for k, mem in snap.items():
        for kind in KINDS:
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
