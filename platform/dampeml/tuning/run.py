"""Run a campaign: build its datasets, run the trials with Ray Tune (each a Ray Train run), log to MLflow.

Layout under the work directory (a shared path on a cluster):

    datasets/<spec name>-<spec hash>[-limit<N>]/   dataset cache, shared by every campaign
    <campaign>/campaign.json                       campaign hash + MLflow parent run id (for resume)
    <campaign>/tune/                               the Tuner's experiment (Tuner.restore reads it)
    <campaign>/train-runs/train-<trial id>/        each trial's Ray Train checkpoints
    <campaign>/comparison.{md,csv,png}             the comparison (also on the MLflow parent run)

MLflow (documented choice): only the driver writes, one process, so a sqlite store sees no
concurrent writers. A Tune callback logs each trial as a child run when it ends (live progress),
and a final sweep over the experiment logs any trial the callback missed (e.g. a driver killed
between a trial's end and its logging); both skip trials already logged, so a resumed campaign
never logs a trial twice. Trials themselves never touch MLflow.

A restarted trial (after a kill) continues its Ray Train run from that run's newest checkpoint,
so a restored campaign repeats at most one epoch per interrupted trial.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray.tune

from dampeml.datasets.loader import DatasetError, load_manifest
from dampeml.datasets.spec import load_spec
from dampeml.errors import InputError
from dampeml.models.architecture import Architecture
from dampeml.registry.models import RegistryError, check_model_uri
from dampeml.registry.tracking import setup_mlflow, tracking_uri
from dampeml.security import check_job_paths
from dampeml.storage import MANIFEST
from dampeml.training.config import TrainConfig
from dampeml.training.loop import STATE_FILE as TRAIN_STATE
from dampeml.training.metrics import evaluate_test
from dampeml.training.trainer import (
    TrainingError,
    check_cpus,
    check_inputs,
    cpus_needed,
    latest_checkpoint,
    load_checkpoint_model,
    make_trainer,
)
from dampeml.tuning.campaign import (
    TIME_METRIC,
    Campaign,
    CampaignError,
    decode_params,
    init_from_values,
    variant_key,
)
from dampeml.tuning.report import comparison, trial_rows, write_report

logger = logging.getLogger(__name__)

EXPERIMENT = "dampeml-campaigns"
STATE_FILE = "campaign.json"


class TuneError(InputError):
    """A campaign could not run or finish; the message says why and what to do."""


@dataclass
class CampaignResult:
    campaign: Campaign
    root: Path
    parent_run_id: str
    trials: list[dict]  # one row per trial (see report.trial_rows)
    groups: list  # report.Group, one per point of the search space
    artifacts: list[Path] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return sum(t["status"] == "ERROR" for t in self.trials)


# --- datasets ---------------------------------------------------------------------------------
def dataset_uri(workdir: Path, spec, limit_events: int | None) -> str:
    """The cache location of a spec: keyed by its content hash (and the event cap)."""
    suffix = f"-limit{limit_events}" if limit_events else ""
    return str((workdir / "datasets" / f"{spec.name}-{spec.spec_hash()}{suffix}").resolve())


def ensure_dataset(spec, uri: str, limit_events: int | None, log: Callable[[str], None]) -> str:
    """Reuse a built dataset, finish a half-built one, or build it (on the driver, through Ray Data)."""
    from dampeml.datasets.build import build_dataset
    from dampeml.datasets.process import BUILD_FILE

    if Path(uri, MANIFEST).exists():
        log(f"dataset {spec.name}@{spec.spec_hash()}: cached at {uri}")
        return uri
    resume = Path(uri, BUILD_FILE).exists()
    log(f"dataset {spec.name}@{spec.spec_hash()}: {'resuming' if resume else 'building'} at {uri}")
    build_dataset(spec, uri, limit_events=limit_events, resume=resume)
    return uri


def prepare_datasets(
    c: Campaign, workdir: Path, log: Callable[[str], None]
) -> tuple[dict[str, str], str | None]:
    """Build every dataset variant of the search space (and the common test set) before any trial."""

    uris = {}
    for assignment in c.dataset_variants():
        spec = c.variant_spec(assignment)
        uris[variant_key(assignment)] = ensure_dataset(
            spec, dataset_uri(workdir, spec, c.limit_events), c.limit_events, log
        )
    test_uri = None
    if c.test_dataset:
        spec = load_spec(c.spec_path(c.test_dataset))
        test_uri = ensure_dataset(spec, dataset_uri(workdir, spec, c.limit_events), c.limit_events, log)
    return uris, test_uri


# --- one trial --------------------------------------------------------------------------------
def dataset_assignment(values: dict[str, Any]) -> dict[str, Any]:
    """The dataset keys of a trial's values (which dataset variant it trains on)."""
    return {k: v for k, v in values.items() if k == "dataset" or k.startswith("dataset.")}


def train_config(c: Campaign, values: dict[str, Any], uri: str, seed: int, run_name: str, storage: str):

    return TrainConfig(
        network=c.network,
        dataset=uri,
        workers=c.resources.workers_per_trial,
        cpus_per_worker=c.resources.cpus_per_worker,
        gpus_per_worker=c.resources.gpus_per_worker,
        preset=c.preset,
        overrides={
            **values.get("model", {}),
            **{k[len("model.") :]: v for k, v in values.items() if k.startswith("model.")},
        },
        steps_per_epoch=c.steps_per_epoch,
        storage=storage,
        run_name=run_name,
        seed=seed,
        register=False,
        **{
            "epochs": c.epochs,
            "batch_per_worker": c.batch_per_worker,
            "base_lr": c.base_lr,
            **{k[len("train.") :]: v for k, v in values.items() if k.startswith("train.")},
        },
    )


def run_trial(
    config: dict, campaign_json: str, datasets: dict[str, str], test_uri: str | None, train_storage: str
) -> None:
    """One trial: a Ray Train run (reports forwarded to Tune every epoch), then the test metrics."""
    from ray.tune.integration.ray_train import TuneReportCallback

    c = Campaign.model_validate_json(campaign_json)
    values = decode_params(c, config["params"])
    uri = datasets[variant_key(dataset_assignment(values))]
    run_name = f"train-{ray.tune.get_context().get_trial_id()}"
    cfg = train_config(c, values, uri, int(config["seed"]), run_name, train_storage)
    net, manifest = check_inputs(cfg)
    resume_from = latest_checkpoint(train_storage, run_name)  # a restarted trial continues its run
    trainer, _, cfg = make_trainer(
        cfg, net, manifest, run_name, train_storage, resume_from, [TuneReportCallback()]
    )
    result = trainer.fit()
    checkpoint = result.checkpoint or resume_from
    if checkpoint is None:
        raise TrainingError(f"trial {run_name} produced no checkpoint")
    with open(os.path.join(checkpoint.path, TRAIN_STATE)) as f:
        history = json.load(f)["history"]
    model = load_checkpoint_model(checkpoint.path, Architecture(cfg.network, cfg.preset, cfg.overrides))
    test, *_ = evaluate_test(model, test_uri or uri, net)
    ray.tune.report(
        {
            **history[-1],
            **test,
            TIME_METRIC: float(sum(h["epoch_seconds"] for h in history)),
            "epochs_done": len(history),
            "train_checkpoint": checkpoint.path,
        }
    )


# --- MLflow (driver only) ---------------------------------------------------------------------
class ChildLogger:
    """Logs a finished trial as a child of the campaign's parent run, once."""

    def __init__(
        self, c: Campaign, tracking_uri: str, parent_run_id: str, train_storage: str, datasets: dict[str, str]
    ):
        self.campaign_json = c.model_dump_json()
        self.datasets = datasets
        self.tracking_uri = tracking_uri
        self.parent_run_id = parent_run_id
        self.train_storage = train_storage

    def _client(self):
        import mlflow

        return mlflow.MlflowClient(self.tracking_uri)

    def logged(self) -> dict[str, Any]:
        """trial id -> its child run, for the children already logged."""
        client = self._client()
        parent = client.get_run(self.parent_run_id)
        runs = client.search_runs(
            [parent.info.experiment_id],
            f"tags.mlflow.parentRunId = '{self.parent_run_id}'",
            max_results=10000,
        )
        return {r.data.tags.get("trial_id"): r for r in runs}

    def log(self, trial) -> None:
        from mlflow.entities import Metric, Param

        c = Campaign.model_validate_json(self.campaign_json)
        status = "FAILED" if trial.status == "ERROR" else "FINISHED"
        client = self._client()
        old = self.logged().get(trial.trial_id)
        if old is not None:
            if old.info.status == "FINISHED" or status == "FAILED":
                return
            client.delete_run(old.info.run_id)  # failed before, finished after a resume
        values = decode_params(c, trial.config["params"])
        result = trial.last_result or {}
        run_name = f"train-{trial.trial_id}"
        ds_uri = self.datasets.get(variant_key(dataset_assignment(values)), "")
        ckpt = latest_checkpoint(self.train_storage, run_name)
        history = []
        if ckpt is not None:
            with open(os.path.join(ckpt.path, TRAIN_STATE)) as f:
                history = json.load(f)["history"]
        tags = {
            "mlflow.parentRunId": self.parent_run_id,
            "trial_id": trial.trial_id,
            "campaign": c.name,
            "network": c.network,
            "ray_train_run": run_name,
            "dataset_uri": ds_uri,
            "dataset_version": _dataset_version(ds_uri),
            "stopped_early": str(
                status == "FINISHED" and len(history) < values.get("train.epochs", c.epochs)
            ).lower(),
        }
        if trial.status == "ERROR":
            tags["error"] = str(getattr(trial, "error_file", "") or "see the Tune trial directory")[:500]
        run = client.create_run(
            client.get_run(self.parent_run_id).info.experiment_id,
            run_name=f"{c.name}-{trial.trial_id}",
            tags=tags,
        )
        params = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in values.items()]
        params += [Param("seed", str(trial.config["seed"])), Param("epochs", str(c.epochs))]
        metrics = []
        ts = int(dt.datetime.now().timestamp() * 1000)
        for h in history:
            metrics += [Metric(k, float(v), ts, int(h["epoch"])) for k, v in h.items() if k != "epoch"]
        for k, v in result.items():
            if k.startswith("test_") and isinstance(v, int | float):
                metrics.append(Metric(k, float(v), ts, 0))
        if history:
            metrics.append(Metric("epochs_done", float(len(history)), ts, 0))
        client.log_batch(run.info.run_id, params=params)
        for i in range(0, len(metrics), 900):  # MLflow takes at most 1000 metrics per batch
            client.log_batch(run.info.run_id, metrics=metrics[i : i + 900])
        client.set_terminated(run.info.run_id, status)


def _dataset_version(uri: str) -> str:

    try:
        return load_manifest(uri)["dataset_version"] if uri else ""
    except DatasetError:
        return ""


class MlflowChildCallback(ray.tune.Callback):
    """Log each trial to MLflow as it ends, from the driver."""

    def __init__(self, logger: ChildLogger):
        self.logger = logger

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.logger.log(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.logger.log(trial)


def _parent_run(c: Campaign, root: Path, state: dict, tracking_uri: str) -> str:
    """The campaign's MLflow parent run: created once, found again on resume."""
    import mlflow

    exp_id = setup_mlflow(EXPERIMENT)
    client = mlflow.MlflowClient(tracking_uri)
    if state.get("parent_run_id"):
        client.update_run(state["parent_run_id"], status="RUNNING")
        return state["parent_run_id"]
    run = client.create_run(
        exp_id, run_name=c.name, tags={"campaign": c.name, "campaign_hash": c.campaign_hash()}
    )
    params = {
        "network": c.network,
        "preset": c.preset,
        "dataset": c.dataset,
        "test_dataset": c.test_dataset or "",
        "limit_events": c.limit_events,
        "repeats": c.repeats,
        "num_samples": c.num_samples,
        "scheduler": c.scheduler.type,
        "metric": c.metric,
        "mode": c.mode,
        "epochs": c.epochs,
        "steps_per_epoch": c.steps_per_epoch,
        "n_trials": c.n_trials(),
        "workers_per_trial": c.resources.workers_per_trial,
        "search_space": json.dumps({k: v.model_dump(exclude_none=True) for k, v in c.search_space.items()}),
    }
    for k, v in params.items():
        client.log_param(run.info.run_id, k, str(v)[:6000])
    client.log_artifact(run.info.run_id, c.source)
    return run.info.run_id


# --- the campaign -----------------------------------------------------------------------------
def param_space(c: Campaign) -> dict:
    """Tune's search space: grid/choice values as JSON strings (so lists stay values), seeds as a grid."""
    dims = {}
    for key, s in c.search_space.items():
        if s.grid is not None:
            dims[key] = ray.tune.grid_search([json.dumps(v) for v in s.grid])
        elif s.choice is not None:
            dims[key] = ray.tune.choice([json.dumps(v) for v in s.choice])
        elif s.uniform is not None:
            dims[key] = ray.tune.uniform(*s.uniform)
        else:
            dims[key] = ray.tune.loguniform(*s.loguniform)
    return {"params": dims, "seed": ray.tune.grid_search(list(range(c.repeats)))}


def run_campaign(
    c: Campaign,
    workdir: str | Path,
    resume: bool = False,
    log: Callable[[str], None] = logger.info,
    ray_address: str | None = None,
    num_cpus: int | None = None,
) -> CampaignResult:
    """Run (or resume) campaign `c` under `workdir`.

    `workdir` is checked first; Ray is started only then, if it is not running yet
    (`dampeml.runtime.init_ray(ray_address, num_cpus)`; a local Ray gets, by default, the
    logical CPUs of `dampeml.runtime.local_cpus` for its concurrent trials).
    """
    import ray
    from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner
    from ray.tune.schedulers import ASHAScheduler

    check_job_paths(workdir=workdir)  # StorageNotAllowedError before anything is read or written
    for uri in init_from_values(c):  # every start point is registered (RegistryError names what is)
        try:
            check_model_uri(uri)
        except RegistryError as exc:
            raise CampaignError(
                f"search_space.train.init_from: {exc}; register the source models first (e.g. "
                "`dampeml pipeline run RECIPE --profile NAME`, see the campaign's description)"
            ) from None
    workdir = Path(workdir).resolve()
    root = workdir / c.name
    # one trial's training config: the CPU budget of the concurrent trials (Tune -> Train -> Data
    # needs CPUs at every level; too few hangs)
    probe = train_config(c, {}, "unused", 0, "probe", str(root))
    budget = dict(concurrent=c.resources.max_concurrent_trials, extra=c.resources.trial_cpus)
    if not ray.is_initialized():
        from dampeml.runtime import init_ray, local_cpus

        cpus = num_cpus or local_cpus(cpus_needed(probe, **budget))
        init_ray(ray_address, None if ray_address else cpus)
    state_path = root / STATE_FILE
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if not resume:
            raise TuneError(
                f"{root} holds campaign {c.name!r} already: pass --resume to continue it, "
                "or choose another --workdir"
            )
        if state["campaign_hash"] != c.campaign_hash():
            raise TuneError(
                f"{root} was started from a different version of {c.source} (hash {state['campaign_hash']}, "
                f"now {c.campaign_hash()}): a resume must use the same campaign; use another --workdir"
            )
    elif resume:
        raise TuneError(f"nothing to resume: no campaign {c.name!r} under {workdir}")
    else:
        state = {"campaign_hash": c.campaign_hash(), "created": dt.datetime.now(dt.UTC).isoformat()}

    check_cpus(probe, **budget)  # fail fast on a budget that would hang

    datasets, test_uri = prepare_datasets(c, workdir, log)
    uri = tracking_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    root.mkdir(parents=True, exist_ok=True)
    state["parent_run_id"] = _parent_run(c, root, state, uri)
    state_path.write_text(json.dumps(state, indent=1))

    train_storage = str(root / "train-runs")
    logger = ChildLogger(c, uri, state["parent_run_id"], train_storage, datasets)
    trainable = ray.tune.with_resources(
        ray.tune.with_parameters(
            run_trial,
            campaign_json=c.model_dump_json(),
            datasets=datasets,
            test_uri=test_uri,
            train_storage=train_storage,
        ),
        {"CPU": c.resources.trial_cpus},
    )
    tune_dir = root / "tune"
    if resume and Tuner.can_restore(str(tune_dir)):
        log(f"restoring campaign {c.name} from {tune_dir}")
        tuner = Tuner.restore(str(tune_dir), trainable, resume_unfinished=True, resume_errored=True)
    else:
        scheduler = None
        if c.scheduler.type == "asha":
            scheduler = ASHAScheduler(
                metric=c.metric,
                mode=c.mode,
                max_t=c.epochs + 1,  # + the trial's final (test) report, so the last epoch is not cut
                grace_period=c.scheduler.grace_period,
                reduction_factor=c.scheduler.reduction_factor,
            )
        tuner = Tuner(
            trainable,
            param_space=param_space(c),
            tune_config=TuneConfig(
                num_samples=c.num_samples,
                max_concurrent_trials=c.resources.max_concurrent_trials,
                scheduler=scheduler,
            ),
            run_config=RunConfig(
                name="tune",
                storage_path=str(root),
                failure_config=FailureConfig(max_failures=0),  # Ray Train retries inside the trial
                callbacks=[MlflowChildCallback(logger)],
                verbose=1,
            ),
        )
    log(f"campaign {c.name}: {c.n_trials()} trials of {c.network}, storage {root}")
    tuner.fit()  # trial errors do not raise: they are logged and counted below
    trials = ray.tune.ExperimentAnalysis(str(tune_dir)).trials
    for t in trials:  # the sweep: any trial the callback missed
        if t.status in ("TERMINATED", "ERROR"):
            logger.log(t)
    groups = comparison(c, trials)
    artifacts = write_report(c, groups, root)
    _finish_parent(uri, state["parent_run_id"], c, groups, artifacts, trials)

    return CampaignResult(c, root, state["parent_run_id"], trial_rows(c, trials), groups, artifacts)


def _finish_parent(uri: str, run_id: str, c: Campaign, groups, artifacts: list[Path], trials) -> None:
    import mlflow

    client = mlflow.MlflowClient(uri)
    for path in artifacts:
        client.log_artifact(run_id, str(path), "comparison")
    done = [g for g in groups if g.values]
    if done:
        best = (min if c.mode == "min" else max)(done, key=lambda g: g.mean)
        client.log_metric(run_id, f"best_mean_{c.metric}", best.mean)
    failed = sum(t.status == "ERROR" for t in trials)
    client.log_metric(run_id, "trials_failed", failed)
    client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


__all__ = ["CampaignError", "CampaignResult", "TuneError", "run_campaign"]
