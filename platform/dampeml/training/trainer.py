"""The driver side of training: check inputs, run Ray Train, evaluate, log and register in MLflow.

Only this process talks to MLflow (sqlite does not like concurrent writers, and on a
cluster the workers need no credentials): workers report metrics with their
checkpoints, the driver logs the history, the test metrics, plots and the model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dampeml.datasets.loader import DatasetError, batch_signature, load_manifest, network_dataset
from dampeml.errors import JobError
from dampeml.models.architecture import Architecture, ArchitectureError, check_same_weights_layout
from dampeml.models.catalog import get_network
from dampeml.registry.models import check_model_uri, load_model
from dampeml.security import check_job_paths, load_weights_only
from dampeml.training.config import TrainConfig
from dampeml.training.loop import MODEL_FILE, STATE_FILE, train_loop_per_worker
from dampeml.training.metrics import evaluate_test


class TrainingError(JobError):
    """Training could not run or finish; the message says why and what to do."""


@dataclass
class TrainResult:
    network: str
    run_name: str
    checkpoint: str
    history: list[dict]
    test: dict[str, float]
    learning_rate: float = 0.0  # initial, after scaling with the workers
    test_targets: np.ndarray | None = None
    test_predictions: np.ndarray | None = None
    mlflow_run_id: str | None = None
    model_version: str | None = None


def check_inputs(cfg: TrainConfig):
    """Fail fast, before Ray starts: the dataset and checkpoint storage are under the allowed
    storage, the network exists and the dataset is built for it."""

    check_job_paths(dataset=cfg.dataset, storage=cfg.storage)  # StorageNotAllowedError, before any read
    net = get_network(cfg.network)  # UnknownNetworkError lists the known names
    if cfg.init_from:
        check_model_uri(cfg.init_from)  # RegistryError saying what exists, before Ray starts
    try:
        manifest = load_manifest(cfg.dataset)
    except DatasetError as exc:
        raise DatasetError(
            f"{exc}; `dampeml dataset build datasets/<spec>.yaml --out {cfg.dataset}`"
        ) from None
    if manifest["kind"] != net.dataset_kind:
        raise DatasetError(
            f"{cfg.dataset} is a {manifest['kind']!r} dataset ({manifest['name']}); "
            f"{cfg.network} trains on {net.dataset_kind!r} datasets"
        )
    roi = manifest["spec"].get("roi") or {}
    wanted = {"stk-hough-coarse": "coarse", "stk-hough-precise": "precise"}.get(cfg.network)
    if wanted and roi.get("geometry") != wanted:
        raise DatasetError(
            f"{cfg.dataset} has {roi.get('geometry')} Hough images; {cfg.network} needs {wanted}"
        )
    for split in ("train", "val"):
        if manifest["splits"][split]["events"] < cfg.global_batch:
            raise DatasetError(
                f"{cfg.dataset}: the {split} split has {manifest['splits'][split]['events']} "
                f"events, fewer than one global batch ({cfg.global_batch})"
            )
    return net, manifest


def latest_checkpoint(storage: str, run_name: str):
    """The newest checkpoint of a run in its storage (a restarted driver must restore explicitly)."""
    from ray.train import Checkpoint

    run_dir = Path(storage) / run_name
    found = sorted(run_dir.glob("checkpoint_*"), key=lambda p: p.stat().st_mtime) if run_dir.exists() else []
    found = [p for p in found if (p / STATE_FILE).exists()]
    return Checkpoint.from_directory(str(found[-1])) if found else None


def cpus_needed(cfg: TrainConfig, concurrent: int = 1, extra: float = 0.0) -> float:
    """Logical CPUs for `concurrent` runs of `cfg`: each its workers, one CPU for the Ray Data
    feed beside them, and `extra` (e.g. the Tune trial itself)."""
    return concurrent * (cfg.workers * cfg.cpus_per_worker + 1 + extra)


def check_cpus(cfg: TrainConfig, concurrent: int = 1, extra: float = 0.0) -> None:
    """Fail fast (instead of hanging) when Ray has too few logical CPUs for the workers and the feed.

    `concurrent` runs of `cfg` at once (Tune trials), each needing `extra` CPUs beside its workers.
    """
    import ray

    if not ray.is_initialized():
        raise TrainingError("Ray is not running: call dampeml.runtime.init_ray() first")
    n_cpus = ray.cluster_resources().get("CPU", 0)
    need = cpus_needed(cfg, concurrent, extra)
    if n_cpus < need:
        runs = f"{concurrent} concurrent runs x " if concurrent > 1 else ""
        raise TrainingError(
            f"{runs}{cfg.workers} workers x {cfg.cpus_per_worker} CPU need at least "
            f"{need:g} logical CPUs (one per run for the Ray Data feed"
            f"{', plus the trial itself' if extra else ''}), the cluster has {n_cpus:g}: "
            "start Ray with more --num-cpus"
        )


def make_trainer(
    cfg: TrainConfig, net, manifest: dict, run_name: str, storage: str, resume_from=None, callbacks=()
):
    """The TensorflowTrainer of one run and its loop config (shared by `train` and Tune trials).

    With `cfg.init_from` and nothing to resume, the workers start from that registered version's
    weights (:func:`initial_weights`); `cfg` comes back with the URI pinned to the version."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    from dampeml.runtime import RUNTIME_ENV

    n_train = manifest["splits"]["train"]["events"]
    n_val = manifest["splits"]["val"]["events"]
    loop_cfg = {
        **cfg.to_dict(),
        "learning_rate": cfg.learning_rate(net.config_for(cfg.preset, cfg.overrides).learning_rate),
        "x_keys": list(net.input_keys),
        # the workers render the stored rows themselves (training.loop._tf_dataset)
        "manifest": {"kind": manifest["kind"], "spec": manifest["spec"]},
        "signature": batch_signature(cfg.dataset),
        "steps_per_epoch": cfg.steps_per_epoch or max(1, n_train // cfg.global_batch),
        "val_steps": max(1, n_val // cfg.global_batch),
        "in_memory": (in_memory := in_memory_shards(manifest, cfg.workers)),
        # Train V2 refuses `resume_from_checkpoint`: the loop restores this one when Ray has none newer
        "resume_from": resume_from.path if resume_from is not None else None,
        "init_weights": None,
    }
    if cfg.init_from and resume_from is None:
        cfg, loop_cfg["init_weights"] = initial_weights(cfg)
        loop_cfg["init_from"] = cfg.init_from
    use_gpu = cfg.gpus_per_worker > 0
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": cfg.gpus_per_worker} if use_gpu else {})}
    trainer = TensorflowTrainer(
        train_loop_per_worker,
        train_loop_config=loop_cfg,
        scaling_config=ScalingConfig(
            num_workers=cfg.workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            worker_runtime_env=RUNTIME_ENV,
            callbacks=list(callbacks),
        ),
        datasets={
            s: network_dataset(  # in memory: read once by each worker, which shuffles it itself
                cfg.dataset,
                s,
                cache=not in_memory and _fits_cache(manifest, s),
                shuffle=s == "train" and not in_memory,
                seed=cfg.seed,
                render=False,
            )
            for s in ("train", "val")
        },
    )
    return trainer, loop_cfg, cfg


def initial_weights(cfg: TrainConfig) -> tuple[TrainConfig, list]:
    """The weights of the registered version `cfg.init_from` (loaded as data, through the safe
    loader), checked to fit the network being trained; `cfg` comes back with the URI pinned to the
    version (an alias may move later), which the run's params then record as its parent."""

    name, version = check_model_uri(cfg.init_from)  # RegistryError saying what exists
    pinned = f"models:/{name}/{version}"
    model = load_model(pinned)
    try:
        check_same_weights_layout(model, Architecture(cfg.network, cfg.preset, cfg.overrides), pinned)
    except ArchitectureError as exc:
        raise TrainingError(
            f"--init-from {cfg.init_from}: {exc}; fine-tune from a version of the same architecture "
            f"({cfg.network}, preset {cfg.preset}, the same overrides)"
        ) from None
    return dataclasses.replace(cfg, init_from=pinned), model.get_weights()


def storage_path(cfg: TrainConfig) -> str:
    """Absolute local path (workers run elsewhere) or the URI as given."""
    return str(Path(cfg.storage).resolve()) if "://" not in cfg.storage else cfg.storage


def train(cfg: TrainConfig, resume: bool = False, lineage: Mapping[str, str] | None = None) -> TrainResult:
    """Run one training of `cfg.network` on `cfg.dataset` through Ray Train; register the model.

    `lineage` (e.g. a pipeline's recipe hash, upstream model versions, `mlflow.parentRunId`)
    is set as tags of the MLflow run and of the registered version.
    """
    from ray.train import TrainingFailedError

    net, manifest = check_inputs(cfg)
    check_cpus(cfg)
    storage = storage_path(cfg)
    run_name = cfg.run_name or f"{cfg.network}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    resume_from = latest_checkpoint(storage, run_name) if resume else None
    if resume and resume_from is None:
        raise TrainingError(f"no checkpoint of run {run_name!r} under {storage} to resume from")

    trainer, loop_cfg, cfg = make_trainer(cfg, net, manifest, run_name, storage, resume_from)
    resume_hint = f"`dampeml train ... --run-name {run_name} --resume` continues from its last checkpoint"
    try:
        result = trainer.fit()
    except TrainingFailedError as exc:  # the workers failed more often than cfg.max_failures
        raise TrainingError(
            f"training of {cfg.network} failed after {cfg.max_failures} retries: {exc}; {resume_hint}"
        ) from exc
    except Exception as exc:  # the driver was stopped or lost Ray: no retry was made
        raise TrainingError(f"training of {cfg.network} stopped: {exc}; {resume_hint}") from exc
    if result.checkpoint is None:
        raise TrainingError(f"training of {cfg.network} produced no checkpoint")
    ckpt_dir = result.checkpoint.path
    with open(os.path.join(ckpt_dir, STATE_FILE)) as f:
        state = json.load(f)
    model = load_checkpoint_model(ckpt_dir, Architecture(cfg.network, cfg.preset, cfg.overrides))
    test, _, y, pred = evaluate_test(model, cfg.dataset, net)
    out = TrainResult(
        cfg.network, run_name, ckpt_dir, state["history"], test, loop_cfg["learning_rate"], y, pred
    )
    if cfg.register:
        from dampeml.registry.logging import log_training

        out.mlflow_run_id, out.model_version = log_training(cfg, net, manifest, model, out, lineage)
    return out


CACHE_LIMIT_BYTES = 512 * 2**20
#: stored bytes (compressed Parquet) of train + val per worker up to which each worker holds its
#: shard in memory (about 3-5x that in Arrow) and shuffles it itself every epoch
IN_MEMORY_LIMIT_BYTES = 512 * 2**20


def _fits_cache(manifest: dict, split: str) -> bool:
    """Cache a split's stored rows in the object store when small (they stay compact there)."""
    return manifest["splits"][split]["bytes"] < CACHE_LIMIT_BYTES


def in_memory_shards(manifest: dict, workers: int) -> bool:
    """Whether each worker reads its shard once and keeps it (training.loop._tf_dataset): a worker's
    share of the stored train and val rows up to IN_MEMORY_LIMIT_BYTES. One answer for all workers,
    from the driver: a worker that streamed while another did not would stall Ray's split."""
    stored = manifest["splits"]["train"]["bytes"] + manifest["splits"]["val"]["bytes"]
    return stored / workers <= IN_MEMORY_LIMIT_BYTES


def load_checkpoint_model(ckpt_dir: str, architecture: Architecture):
    """The uncompiled model of a checkpoint, loaded as data like a registered one: `architecture`
    built by our builders, only the weights read from the file."""

    model = architecture.build()
    load_weights_only(model, os.path.join(ckpt_dir, MODEL_FILE), f"checkpoint {ckpt_dir}")
    return model
