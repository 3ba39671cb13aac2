"""Log a finished training to MLflow and register the model: params, lineage, curves, plots."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dampeml.logs import quiet_mlflow  # noqa: E402
from dampeml.models.architecture import (  # noqa: E402
    ARCHITECTURE_TAG,
    Architecture,
    check_same_weights_layout,
)
from dampeml.registry.tracking import setup_mlflow  # noqa: E402
from dampeml.training.metrics import roc_auc

TF_KERAS_PIN = "tf-keras==2.21.0"


def _loss_figure(history: list[dict]):
    fig, ax = plt.subplots(figsize=(5, 3.5))
    epochs = [h["epoch"] for h in history]
    for key in ("loss", "val_loss"):
        ax.plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    return fig


def _residual_figure(task: str, y: np.ndarray, pred: np.ndarray):

    if task == "regression":
        names = ["x_top", "y_top", "x_bot", "y_bot"][: y.shape[1]]
        fig, axes = plt.subplots(1, len(names), figsize=(3 * len(names), 3))
        for i, (ax, n) in enumerate(zip(np.atleast_1d(axes), names, strict=True)):
            r = pred[:, i] - y[:, i]
            lim = np.percentile(np.abs(r), 99) or 1.0
            ax.hist(r, bins=60, range=(-lim, lim))
            ax.set_xlabel(f"residual {n}")
        fig.tight_layout()
        return fig
    fig, ax = plt.subplots(figsize=(4, 4))
    t, p = y.ravel() > 0.5, pred.ravel()
    thr = np.unique(np.quantile(p, np.linspace(0, 1, 200)))
    tpr = [(p[t] >= c).mean() for c in thr]
    fpr = [(p[~t] >= c).mean() for c in thr]
    ax.plot(fpr, tpr, label=f"AUC {roc_auc(t, p):.4f}")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend()
    fig.tight_layout()
    return fig


def log_training(
    cfg, net, manifest: dict, model, result, lineage: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """One MLflow run per training; returns (run id, registered model version).

    The version carries its lineage as tags (dataset version and manifest hash, the model it was
    fine-tuned from, what `lineage` adds: a pipeline's recipe hash and upstream versions) and a
    description a person can read in the MLflow UI.
    """
    import mlflow

    setup_mlflow()
    client = mlflow.MlflowClient()
    with mlflow.start_run(run_name=result.run_name) as run:
        params = {k: v for k, v in cfg.to_dict().items() if k != "overrides"}
        params.update(
            {
                "global_batch": cfg.global_batch,
                "learning_rate": result.learning_rate,
                **{f"override.{k}": v for k, v in cfg.overrides.items()},
            }
        )
        mlflow.log_params(params)
        mlflow.set_tags(
            {
                "network": net.name,
                "dataset_uri": cfg.dataset,
                "dataset_version": manifest["dataset_version"],
                "dataset_spec_hash": manifest["spec_hash"],
                "ray_run_name": result.run_name,
                "checkpoint": result.checkpoint,
                **(lineage or {}),
            }
        )
        for h in result.history:
            mlflow.log_metrics({k: v for k, v in h.items() if k != "epoch"}, step=int(h["epoch"]))
        mlflow.log_metrics(result.test)
        mlflow.log_figure(_loss_figure(result.history), "plots/loss.png")
        if result.test_targets is not None:
            mlflow.log_figure(
                _residual_figure(net.task, result.test_targets, result.test_predictions),
                "plots/test_residuals.png" if net.task == "regression" else "plots/test_roc.png",
            )
        plt.close("all")
        version = log_keras_model(model, Architecture(net.name, cfg.preset, cfg.overrides))
        own = {
            "dataset_version": manifest["dataset_version"],
            "dataset_spec_hash": manifest["spec_hash"],
            "init_from": cfg.init_from,
            "git_commit": git_commit(),
            **{k: v for k, v in (lineage or {}).items() if not k.startswith("mlflow.")},
        }
        own = {k: str(v) for k, v in own.items() if v}
        for k, v in {**result.test, **own}.items():
            client.set_model_version_tag(net.name, version, k, str(v))
        client.update_model_version(net.name, version, description=_description(cfg, result, own))
    return run.info.run_id, version


def git_commit() -> str | None:
    """The commit of the source tree this package runs from, when it is a git checkout."""

    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _description(cfg, result, lineage: Mapping[str, str]) -> str:
    """What the MLflow UI shows for a version: how it was trained, on what, from what."""
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(result.test.items()))
    lines = [
        f"{cfg.network} ({cfg.preset} preset{', overrides ' + str(cfg.overrides) if cfg.overrides else ''}), "
        f"{cfg.epochs} epochs x {cfg.workers} workers through Ray Train (run {result.run_name}).",
        f"Test split: {metrics}.",
        *(f"{k}: {v}" for k, v in sorted(lineage.items())),
    ]
    return "\n".join(lines)


def requirements() -> list[str]:
    """The logged model's pip requirements, given explicitly.

    Letting MLflow infer them loads the model again in a subprocess: ~1 s idle, 20 s on a loaded
    2-core machine, per model. These are the same packages, pinned to what is installed.
    """
    import mlflow
    import tensorflow as tf

    return [
        f"mlflow=={mlflow.__version__}",
        f"tensorflow=={tf.__version__}",
        TF_KERAS_PIN,
        f"numpy=={np.__version__}",
    ]


def log_keras_model(model, architecture: Architecture) -> str:
    """Log a tf-keras model into the active run (signature, requirements), register it; the version.

    The version is tagged with its `architecture`, from which the loader rebuilds it: a model that
    the architecture does not rebuild (other weight shapes) is refused here, before it is logged.
    """
    import mlflow
    from mlflow.models import infer_signature

    registered_name = architecture.registered_name
    check_same_weights_layout(model, architecture, registered_name)
    example = _example_inputs(model)
    signature = infer_signature(example, model.predict(example, verbose=0))
    with quiet_mlflow():  # MLflow's "Successfully registered model" lines: ours say it
        info = mlflow.tensorflow.log_model(
            model,
            name="model",
            signature=signature,
            registered_model_name=registered_name,
            pip_requirements=requirements(),
        )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(registered_name, version, ARCHITECTURE_TAG, architecture.to_json())
    return version


def _example_inputs(model):
    """A zero batch matching the model's inputs (a dict for multi-input models)."""

    def zeros(t):
        return np.zeros((2, *t.shape[1:]), dtype=t.dtype.as_numpy_dtype)

    if len(model.inputs) == 1:
        return zeros(model.inputs[0])
    return {name: zeros(t) for name, t in zip(model.input_names, model.inputs, strict=True)}
