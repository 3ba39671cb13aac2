"""Peak memory of each Ray process, by name, while `dampeml reprocess` runs: which workers grow.

Run: `.venv/bin/python benchmarks/bench_actor_memory.py WORK "INPUT_GLOB" OUT` with WORK holding the
registry (mlflow.db with the reference models). Samples /proc every 2 s; prints each process name's
peak RSS and the two largest processes at ten points of the run (benchmarks/README.md, "Scale", run 12).
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
peaks = collections.defaultdict(float)
series = []
while p.poll() is None:
    snap = collections.defaultdict(float)
    for d in glob.glob("/proc/[0-9]*"):
        try:
            c = open(d + "/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            if not c.startswith("ray::"):
                continue
            rss = [int(row.split()[1]) for row in open(d + "/status") if row.startswith("VmRSS")][0] / 1024
        except Exception:
            continue
        name = c.split()[0][:60]
        snap[name] = max(snap[name], rss)
    for k, v in snap.items():
        peaks[k] = max(peaks[k], v)
    series.append((time.time() - t0, dict(snap)))
    time.sleep(2)
print("exit", p.returncode, "wall", round(time.time() - t0))
for k, v in sorted(peaks.items(), key=lambda kv: -kv[1])[:8]:
    print(f"{v:8.0f} MB  {k}")
# the largest actor over time (every ~10% of the run)
n = len(series)
for i in range(0, n, max(1, n // 10)):
    t, snap = series[i]
    top = sorted(snap.items(), key=lambda kv: -kv[1])[:2]
    print(f"t={t:6.0f}s " + "; ".join(f"{k[:40]} {v:.0f}" for k, v in top))
