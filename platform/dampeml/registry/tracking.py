"""Where MLflow lives: the embedded default (sqlite + artifact folder under the working
directory) or a server named by MLFLOW_TRACKING_URI.

Absolute paths everywhere: Ray workers and jobs run in other working directories, and a
relative sqlite URI would silently create a second, empty store there.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
EXPERIMENT = "dampeml"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else sqlite in the working directory (absolute)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{Path(DEFAULT_DB).resolve()}"


def setup_mlflow(experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id."""
    import mlflow

    uri = tracking_uri()
    os.environ["MLFLOW_TRACKING_URI"] = uri  # so subprocesses and workers agree
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is not None:
        mlflow.set_experiment(experiment)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:"):
        location = Path(DEFAULT_ARTIFACTS).resolve().as_uri()
    exp_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment)
    return exp_id
