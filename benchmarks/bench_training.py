"""Training throughput: samples per second per network family, and Ray Train vs plain Keras `fit`.

Run: `.venv/bin/python benchmarks/bench_training.py [--steps 30] [--full-steps 3] [--ray-steps 40]`.
Prints:

1. Per catalog network (one per family and the BGO line-fit / Hough / raw STK / HAMF
   variants), small and full presets: training samples per second of `model.fit` on in-memory
   batches of 32 shaped like the loader's (random images; the targets do not matter for
   speed), after one warm-up step (graph tracing). Full presets run only --full-steps steps.
2. For bgo-direction-low (small preset) on a built dataset (datasets/bgo-direction-low-small.yaml,
   --limit-events events): plain Keras `fit` on the train split's arrays in memory, against
   `dampeml.training.trainer.train` (Ray Train, MultiWorkerMirroredStrategy, Ray Data feed)
   with 1 and 2 CPU workers, same per-worker batch (32), --ray-steps steps per epoch and
   --ray-epochs epochs. The Ray rows are end to end: the wall time of `train` (worker start,
   TensorFlow import, the data feed, per-epoch validation and checkpoint, test evaluation)
   over the training samples it processed; the Keras row is the `fit` call alone. Ratios are
   against Keras `fit` measured in the same run. (Differencing two Ray runs to remove the
   start-up gave negative rates on a shared, loaded machine: not used.)
3. Steady state (`--steady`): for bgo-direction-low and stk-hough-coarse (small presets) on
   datasets built from their small specs (--steady-bgo-events, --steady-hough-events), the same
   training events and epochs (--steady-epochs) through plain Keras `fit` on in-memory arrays
   and through `train` (Ray Train, 1 CPU worker, Ray Data feed from the Parquet files). Per
   epoch, each side's training pass and its whole epoch (with the validation pass, and Ray's
   checkpoint) are timed; the steady state is the median over the epochs after the first, the
   fixed cost what the wall time holds beyond the epochs. Ratios: Ray Train over `fit`.
"""

from __future__ import annotations

import argparse
import glob
import os
import platform as stdlib_platform
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import pyarrow.parquet as pq  # noqa: E402

from dampeml.datasets.build import build_dataset  # noqa: E402
from dampeml.datasets.loader import load_manifest, network_batch  # noqa: E402
from dampeml.datasets.spec import load_spec  # noqa: E402
from dampeml.models.catalog import build, get_network  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BATCH = 32
NETWORKS = (
    "bgo-direction-mid",
    "stk-hough-precise",
    "inelastic-raw-stk",
    "inelastic-hough",
    "electron-proton",
)
#: Input shapes and dtypes of the loader's batches (tests/test_models.py checks the same).
INPUTS = {
    "bgo-direction": {"x": ((14, 22, 1), np.float32)},
    "stk-hough": {"x": ((400, 400, 4), np.uint8)},
    "inelastic-hough": {"x": ((400, 400, 4), np.uint8)},
    "inelastic-raw-stk": {"x": ((24, 3072, 1), np.uint8)},
    "electron-proton": {"x_image": ((14, 22, 1), np.float32), "x_vars": ((34,), np.float32)},
}


def random_batch(name: str, n: int, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    spec = get_network(name)
    x = {}
    for key, (shape, dtype) in INPUTS[spec.dataset_kind].items():
        if dtype == np.uint8:
            x[key] = (rng.random((n, *shape)) < 0.01).astype(np.uint8) * 200  # sparse, as the images
        else:
            x[key] = rng.random((n, *shape), dtype=np.float32)
    n_out = 4 if spec.task == "regression" else 1
    y = rng.random((n, n_out), dtype=np.float32)
    if spec.task == "regression":
        y = (y - 0.5) * 400
    else:
        y = (y > 0.5).astype(np.float32)
    return x, y


def fit_rate(name: str, preset: str, steps: int) -> tuple[float, int]:
    """Samples per second of model.fit over `steps` batches of 32 (after a warm-up step), params."""
    model = build(name, preset=preset)
    rng = np.random.default_rng(0)
    x, y = random_batch(name, BATCH * steps, rng)
    warm = {k: v[:BATCH] for k, v in x.items()}
    model.fit(warm, y[:BATCH], batch_size=BATCH, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
    return BATCH * steps / (time.perf_counter() - t), model.count_params()


def section_families(steps: int, full_steps: int) -> None:
    print(f"\n1. model.fit samples/s, batch {BATCH}, in memory ({steps} steps small, {full_steps} full)")
    print(f"{'network':22s} {'family':12s} {'preset':6s} {'params':>10s} {'samples/s':>10s}")
    for name in NETWORKS:
        family = get_network(name).family
        for preset, n in (("small", steps), ("full", full_steps)):
            rate, params = fit_rate(name, preset, n)
            print(f"{name:22s} {family:12s} {preset:6s} {params:10d} {rate:10.1f}", flush=True)


def split_arrays(uri: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    manifest = load_manifest(uri)
    table = pq.ParquetDataset(sorted(glob.glob(f"{uri}/{split}/*.parquet"))).read()
    batch = network_batch(table, manifest)
    return batch["x"], batch["y"]


def section_ray(limit_events: int, ray_steps: int, ray_epochs: int) -> None:
    import ray

    from dampeml.runtime import RUNTIME_ENV
    from dampeml.training.config import TrainConfig
    from dampeml.training.trainer import train

    name = "bgo-direction-low"
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        uri = f"{tmp}/dataset"
        # a private local instance (address="local"), as init_ray(num_cpus=4) starts one, but
        # never joined to another session's cluster on the same machine
        for key, value in RUNTIME_ENV["env_vars"].items():
            os.environ.setdefault(key, value)
        ray.init(address="local", num_cpus=4, object_store_memory=500 * 2**20, include_dashboard=False)
        try:
            build_dataset(load_spec(REPO / "datasets" / "bgo-direction-low-small.yaml"), uri, limit_events)
            x, y = split_arrays(uri)
            print(
                f"\n2. {name} (small) on {len(y)} training events of bgo-direction-low-small: "
                f"{ray_steps} steps per epoch, batch {BATCH} per worker"
            )
            # plain Keras fit: same steps (data repeated as the Ray loop does), in memory
            model = build(name, preset="small")
            reps = -(-ray_steps * BATCH * ray_epochs // len(y))
            xs, ys = np.concatenate([x] * reps), np.concatenate([y] * reps)
            model.fit(xs[:BATCH], ys[:BATCH], batch_size=BATCH, verbose=0)
            n = ray_steps * BATCH * ray_epochs
            t = time.perf_counter()
            model.fit(xs[:n], ys[:n], batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
            keras_rate = n / (time.perf_counter() - t)
            print(f"{'Keras fit, in memory, 1 process':42s} {keras_rate:9.1f} samples/s  ratio 1.00")
            for workers in (1, 2):
                cfg = TrainConfig(
                    network=name,
                    dataset=uri,
                    workers=workers,
                    epochs=ray_epochs,
                    steps_per_epoch=ray_steps,
                    storage=f"{tmp}/runs",
                    register=False,
                )
                t = time.perf_counter()
                train(cfg)
                wall = time.perf_counter() - t
                rate = ray_steps * BATCH * workers * ray_epochs / wall
                label = f"Ray Train, {workers} worker{'s' if workers > 1 else ''} (end to end)"
                print(
                    f"{label:42s} {rate:9.1f} samples/s  ratio {rate / keras_rate:.3f}  (wall {wall:.0f} s)",
                    flush=True,
                )
        finally:
            ray.shutdown()


class _EpochTimer:
    """Keras callback: seconds of each epoch's training pass and of the whole epoch."""

    def __init__(self):
        from dampeml.models.common import tf_keras

        class Timer(tf_keras().callbacks.Callback):
            def on_epoch_begin(cb, epoch, logs=None):  # noqa: N805
                cb.t0 = time.perf_counter()

            def on_test_begin(cb, logs=None):  # noqa: N805
                cb.fit_end = time.perf_counter()

            def on_epoch_end(cb, epoch, logs=None):  # noqa: N805
                end = time.perf_counter()
                self.fit.append(getattr(cb, "fit_end", end) - cb.t0)
                self.epoch.append(end - cb.t0)

        self.fit: list[float] = []
        self.epoch: list[float] = []
        self.callback = Timer()


def scaled_spec(spec: str, events: int):
    """The small spec `spec` with its particles' events scaled to `events` in all (same mix)."""
    from dampeml.datasets.spec import DatasetSpec

    data = load_spec(REPO / "datasets" / spec).model_dump(mode="json")
    total = sum(p["events"] for src in data["sources"] for p in src["particles"].values())
    for src in data["sources"]:
        for p in src["particles"].values():
            p["events"] = max(1, round(p["events"] * events / total))
        src["events_per_unit"] = max(src["events_per_unit"], 5000)
    return DatasetSpec.model_validate(data)


def steady_pair(
    name: str, spec: str, limit_events: int, epochs: int, tmp: str, cpus_per_worker: float
) -> None:
    """One network: Keras fit and Ray Train (1 worker) on the same built dataset, same epochs."""
    from dampeml.training.config import TrainConfig
    from dampeml.training.trainer import train

    uri = f"{tmp}/{name}"
    t = time.perf_counter()
    build_dataset(scaled_spec(spec, limit_events), uri, limit_events)
    x, y = split_arrays(uri)
    xv, yv = split_arrays(uri, "val")
    steps = len(y) // BATCH
    n = steps * BATCH
    print(
        f"\n3. {name} (small) on {n} training events of {spec} ({len(yv)} validation), "
        f"{epochs} epochs, batch {BATCH}; built and read in {time.perf_counter() - t:.0f} s",
        flush=True,
    )
    model = build(name, preset="small")
    timer = _EpochTimer()
    t = time.perf_counter()
    model.fit(x[:n], y[:n], batch_size=BATCH, epochs=epochs, verbose=0, shuffle=True,
              validation_data=(xv, yv), validation_batch_size=BATCH, callbacks=[timer.callback])  # fmt: skip
    keras_wall = time.perf_counter() - t
    cfg = TrainConfig(
        network=name,
        dataset=uri,
        workers=1,
        cpus_per_worker=cpus_per_worker,
        epochs=epochs,
        storage=f"{tmp}/runs",
        register=False,
    )
    t = time.perf_counter()
    result = train(cfg)
    ray_wall = time.perf_counter() - t
    ray_fit = [h["fit_seconds"] for h in result.history]
    ray_epoch = [h["epoch_seconds"] for h in result.history]
    rows = (
        ("Keras fit, in memory", timer.fit, timer.epoch, keras_wall),
        ("Ray Train, 1 worker, Ray Data", ray_fit, ray_epoch, ray_wall),
    )
    base = None
    for label, fit_s, epoch_s, wall in rows:
        fit_rate = n / float(np.median(fit_s[1:]))
        epoch_rate = n / float(np.median(epoch_s[1:]))
        fixed = wall - sum(epoch_s)
        base = base or (fit_rate, epoch_rate)
        print(
            f"{label:32s} training pass {fit_rate:8.1f} samples/s (ratio {fit_rate / base[0]:.2f}), "
            f"whole epoch {epoch_rate:8.1f} (ratio {epoch_rate / base[1]:.2f}); first epoch "
            f"{epoch_s[0]:.0f} s, later {np.median(epoch_s[1:]):.0f} s; wall {wall:.0f} s, "
            f"of which outside the epochs {fixed:.0f} s",
            flush=True,
        )


def section_steady(bgo_events: int, hough_events: int, epochs: int, cpus_per_worker: float) -> None:
    import ray

    from dampeml.runtime import RUNTIME_ENV

    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        for key, value in RUNTIME_ENV["env_vars"].items():
            os.environ.setdefault(key, value)
        ray.init(address="local", num_cpus=4, object_store_memory=2 * 2**30, include_dashboard=False)
        try:
            if bgo_events:  # 0 skips the network
                steady_pair(
                    "bgo-direction-low",
                    "bgo-direction-low-small.yaml",
                    bgo_events,
                    epochs,
                    tmp,
                    cpus_per_worker,
                )
            if hough_events:
                steady_pair(
                    "stk-hough-coarse",
                    "stk-hough-coarse-small.yaml",
                    hough_events,
                    epochs,
                    tmp,
                    cpus_per_worker,
                )
        finally:
            ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--full-steps", type=int, default=3)
    parser.add_argument("--ray-steps", type=int, default=40)
    parser.add_argument("--ray-epochs", type=int, default=4)
    parser.add_argument("--limit-events", type=int, default=4000)
    parser.add_argument("--skip-families", action="store_true")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--steady", action="store_true", help="run section 3 only")
    parser.add_argument("--steady-bgo-events", type=int, default=60000, help="0 skips the BGO network")
    parser.add_argument("--steady-hough-events", type=int, default=8000, help="0 skips the Hough network")
    parser.add_argument("--steady-epochs", type=int, default=5)
    parser.add_argument(
        "--steady-cpus-per-worker", type=float, default=1.0, help="the Ray Train worker's CPUs (and threads)"
    )
    args = parser.parse_args()
    if args.steady:
        section_steady(
            args.steady_bgo_events, args.steady_hough_events, args.steady_epochs, args.steady_cpus_per_worker
        )
        return
    print(f"machine: {stdlib_platform.processor() or stdlib_platform.machine()}, {os.cpu_count()} cores")
    if not args.skip_families:
        section_families(args.steps, args.full_steps)
    if not args.skip_ray:
        section_ray(args.limit_events, args.ray_steps, args.ray_epochs)


if __name__ == "__main__":
    main()
