"""Small-run overheads of a training: Ray Train's controller polling at its default against ours.

Run: `.venv/bin/python benchmarks/bench_small_runs.py [--pairs 3] [--workdir DIR]`.

A CI run or one trial of a campaign trains for seconds, and Ray Train's fixed costs (the controller
and worker processes, TensorFlow's import in them, the data feed's start, and the controller
noticing the end) are most of its wall time. This times the platform's `train` (bgo-direction-low,
small preset, one worker, 3 epochs of 4 steps on the small spec limited to 1,000 events) end to
end, alternating Ray's default health-check interval (2 s) with the platform's
(`dampeml.runtime.TRAIN_POLL_ENV`), `--pairs` times each, in one process on one local Ray; prints
each run's wall time, the means and their ratio. The interval reaches the controller through the
driver's environment (Ray Train propagates it when the run starts).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from dampeml.datasets.build import build_dataset
from dampeml.datasets.spec import load_spec
from dampeml.runtime import TRAIN_POLL_ENV, init_ray
from dampeml.training.config import TrainConfig
from dampeml.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
POLL_VAR = next(iter(TRAIN_POLL_ENV))
RAY_DEFAULT_S = "2.0"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3, help="runs per setting, alternating")
    ap.add_argument("--workdir", help="where the dataset, runs and MLflow store go (default: temporary)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="small-runs-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    init_ray(num_cpus=4)
    uri = str(work / "dataset")
    if not Path(uri, "manifest.json").exists():
        build_dataset(load_spec(REPO / "datasets" / "bgo-direction-low-small.yaml"), uri, limit_events=1000)
    walls: dict[str, list[float]] = {RAY_DEFAULT_S: [], TRAIN_POLL_ENV[POLL_VAR]: []}
    for i in range(args.pairs):
        for interval in walls:
            os.environ[POLL_VAR] = interval
            cfg = TrainConfig(
                network="bgo-direction-low", dataset=uri, workers=1, epochs=3, steps_per_epoch=4,
                storage=str(work / "runs"), register=False, run_name=f"poll-{interval}-{i}",
            )  # fmt: skip
            t0 = time.perf_counter()
            train(cfg)
            walls[interval].append(time.perf_counter() - t0)
            print(f"run {i + 1}, poll {interval} s: {walls[interval][-1]:.1f} s", flush=True)
    mean = {k: statistics.mean(v) for k, v in walls.items()}
    ours = TRAIN_POLL_ENV[POLL_VAR]
    print(f"\nmachine: {os.cpu_count()} cores; {args.pairs} runs each, alternating")
    print("| controller poll | mean wall (s) | runs (s) |")
    print("|---|---|---|")
    for k, v in walls.items():
        print(f"| {k} s | {mean[k]:.1f} | {', '.join(f'{x:.1f}' for x in v)} |")
    print(f"\nratio ours / Ray's default: {mean[ours] / mean[RAY_DEFAULT_S]:.2f}")


if __name__ == "__main__":
    main()
