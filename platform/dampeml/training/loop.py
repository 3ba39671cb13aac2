"""The per-worker training loop that Ray Train runs on every worker.

MultiWorkerMirroredStrategy needs every worker to do the same collectives in the same
order: each epoch runs a fixed number of steps (computed on the driver from the
manifest; data passed over as often as needed, never once more), and every worker calls
`model.save` (rank 0 into the checkpoint, the others into a throw-away directory) and
`ray.train.report`.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time

import numpy as np
import pyarrow as pa

import dampeml  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
from dampeml.datasets.loader import network_batch
from dampeml.models.catalog import build

MODEL_FILE = "model.keras"
STATE_FILE = "state.json"


def _tf_dataset(
    shard,
    to_arrays,
    x_keys: list[str],
    batch: int,
    signature: dict,
    steps: int,
    in_memory: bool = False,
    shuffle_seed: int | None = None,
):
    """Exactly `steps` batches per iteration, passing over the shard as often as needed.

    `in_memory`: the worker reads its whole shard now, once, and every pass then comes from memory,
    in a new order each pass when `shuffle_seed` is given (else in stored order). Ray Data's
    per-epoch shuffle and split of the rows (tasks through the object store, and a coordinator)
    took CPU from the training on a small machine (benchmarks/README.md, "Training"). The driver
    decides it for all workers alike (`trainer.in_memory_shards`): each reads one whole pass of
    its split now, and none ever starts another.

    The shard holds stored rows (compact: a Hough event's hits, not its 640 kB image);
    `to_arrays` (:func:`dampeml.datasets.loader.network_batch`) renders them, a read at a time, here,
    in tf.data's generator thread, beside the training step (the renderers release the GIL), and
    the batches are prefetched. Rendered in Ray Data tasks instead, every image went through the
    object store and a second conversion, CPU taken from the training on a small machine
    (benchmarks/README.md, "Training"). `signature`: {array: (row shape, dtype)} of its output.

    Every pass over a `streaming_split` shard is an epoch of Ray's split coordinator,
    which waits until all workers start it. A bare `.repeat()` let the prefetch of one
    worker (but not always the other's) start a pass after the last needed batch; the
    workers' pass counts then drifted apart and a later epoch deadlocked. `take(steps)`
    stops asking before a pass nobody needs (the prefetch comes after it).
    """
    import tensorflow as tf
    from ray.train.tensorflow import prepare_dataset_shard

    spec = {k: tf.TensorSpec((None, *shape), dtype) for k, (shape, dtype) in signature.items()}

    def inputs(arrays: dict):
        return arrays[x_keys[0]] if len(x_keys) == 1 else {k: arrays[k] for k in x_keys}

    rows = _rows_per_read(batch, signature)
    if in_memory:
        stored = pa.concat_tables(
            shard.iter_batches(batch_size=None, batch_format="pyarrow")
        ).combine_chunks()
        orders = np.random.default_rng(shuffle_seed)

        def reads():
            n = stored.num_rows
            order = orders.permutation(n) if shuffle_seed is not None else np.arange(n)
            for start in range(0, n, rows):
                yield stored.take(order[start : start + rows])
    else:

        def reads():
            yield from shard.iter_batches(batch_size=rows, batch_format="pyarrow", drop_last=False)

    def batches():
        # read and render `rows` at a time (Ray Data's per-batch cost, paid once per read, halved the
        # small networks' rate), then hand out `batch`-row slices; a pass ends without its last
        # partial batch, as drop_last would, so every pass yields the same count
        for table in reads():
            arrays = to_arrays(table)
            for start in range(0, len(arrays["y"]) - batch + 1, batch):
                part = {k: a[start : start + batch] for k, a in arrays.items()}
                yield inputs(part), part["y"]

    ds = tf.data.Dataset.from_generator(batches, output_signature=(inputs(spec), spec["y"]))
    # No tf.data autotuning: nothing here has a tunable parallelism, and its optimisation thread
    # sleeps with a period doubling from 10 ms; an iterator's deletion at the end of every epoch's
    # `fit` waited for its wake-up, so a 20.5 s pass took 40.96 s (81.92 s for 41 s passes:
    # benchmarks/README.md, "Training").
    options = tf.data.Options()
    options.autotune.enabled = False
    return prepare_dataset_shard(ds.repeat().take(steps).prefetch(2).with_options(options))


#: bytes of rendered inputs read at once in a worker (a Hough image is 640 kB: ~3 batches)
READ_BYTES = 64 * 2**20
#: batches read at once at the most (a BGO image is 1.2 kB)
READ_BATCHES = 32


def _rows_per_read(batch: int, signature: dict) -> int:
    """Rows per read: whole batches, at most READ_BATCHES of them and about READ_BYTES."""

    row = sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in signature.values())
    return batch * max(1, min(READ_BATCHES, READ_BYTES // max(1, row * batch)))


def train_loop_per_worker(cfg: dict) -> None:
    """Build (or restore) the model inside the strategy, then fit epoch by epoch with checkpoints."""
    import ray.train
    import tensorflow as tf

    if cfg["cpus_per_worker"] >= 2:  # a worker computes on all the CPUs it reserved
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(cfg["cpus_per_worker"]))
        except RuntimeError:  # TensorFlow already ran in this process: its pools are fixed
            pass
    tf.keras.utils.set_random_seed(cfg["seed"])
    ctx = ray.train.get_context()
    # one worker has nobody to reduce gradients with: TensorFlow's default strategy, without the
    # collective ops of MultiWorkerMirroredStrategy on every step
    multi = ctx.get_world_size() > 1
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if multi else tf.distribute.get_strategy()
    rank = ctx.get_world_rank()
    state = {"epoch": 0, "lr": cfg["learning_rate"], "best_val": None, "wait": 0, "history": []}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and cfg.get("resume_from"):  # a restarted driver's explicit restore
        checkpoint = ray.train.Checkpoint(cfg["resume_from"])
    with strategy.scope():
        model = build(
            cfg["network"],
            preset=cfg["preset"],
            overrides=cfg["overrides"],
            learning_rate=cfg["learning_rate"],
            frozen_backbone=cfg.get("frozen_backbone", False),
        )
        if checkpoint is not None:
            # a checkpoint is data too (storage may be shared): our builders make the network, the
            # file gives only tensors, the optimizer's included (built first so that they load)
            model.optimizer.build(model.trainable_variables)
            with checkpoint.as_directory() as d:
                model.load_weights(os.path.join(d, MODEL_FILE))
                with open(os.path.join(d, STATE_FILE)) as f:
                    state = json.load(f)
            state.setdefault("restored_from_epoch", []).append(state["epoch"])  # lineage of restarts
        elif cfg.get("init_weights") is not None:  # fine-tuning: a registered version's weights
            model.set_weights(cfg["init_weights"])
    model.optimizer.learning_rate.assign(state["lr"])

    feed = (
        functools.partial(network_batch, manifest=cfg["manifest"]),
        cfg["x_keys"],
        cfg["batch_per_worker"],
    )
    memory = cfg.get("in_memory", False)
    seed = cfg["seed"] * 1009 + rank  # each worker its own sequence of orders
    train = _tf_dataset(
        ray.train.get_dataset_shard("train"), *feed, cfg["signature"], cfg["steps_per_epoch"], memory, seed
    )
    val = _tf_dataset(ray.train.get_dataset_shard("val"), *feed, cfg["signature"], cfg["val_steps"], memory)
    for epoch in range(state["epoch"], cfg["epochs"]):
        t0 = time.perf_counter()  # per-epoch seconds: the steady state, apart from start-up
        fit = model.fit(train, epochs=1, steps_per_epoch=cfg["steps_per_epoch"], verbose=0)
        t1 = time.perf_counter()
        val_logs = model.evaluate(val, steps=cfg["val_steps"], verbose=0, return_dict=True)
        logs = {
            "epoch": epoch + 1,
            "lr": float(state["lr"]),
            **{k: float(v[-1]) for k, v in fit.history.items()},
            **{f"val_{k}": float(v) for k, v in val_logs.items()},
            "fit_seconds": t1 - t0,
            "val_seconds": time.perf_counter() - t1,
        }
        # reduce-on-plateau (the paper halves the learning rate); kept in the checkpoint state
        val_loss = logs["val_loss"]
        if state["best_val"] is None or val_loss < state["best_val"] * (1 - 1e-4):
            state["best_val"], state["wait"] = val_loss, 0
        else:
            state["wait"] += 1
            if state["wait"] >= cfg["lr_patience"]:
                state["lr"] /= 2
                state["wait"] = 0
                model.optimizer.learning_rate.assign(state["lr"])
        state["epoch"] = epoch + 1
        state["history"].append(logs)
        with tempfile.TemporaryDirectory() as d:
            target = d if rank == 0 else os.path.join(d, "discard")
            os.makedirs(target, exist_ok=True)
            model.save(os.path.join(target, MODEL_FILE))  # a collective: every worker saves
            logs["epoch_seconds"] = time.perf_counter() - t0  # with validation and the checkpoint
            with open(os.path.join(d, STATE_FILE), "w") as f:
                json.dump(state, f)
            ray.train.report(logs, checkpoint=ray.train.Checkpoint.from_directory(d) if rank == 0 else None)
