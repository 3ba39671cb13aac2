"""Register every catalog network without training it: a registry for tests, timings and plumbing.

Training all six networks takes minutes even in their small presets; what the reconstruction
chain, the reprocessing job and the benchmarks need to exercise is a registry that holds a
model of the right architecture under each name and alias. :func:`register_catalog` builds
each network (small or full preset, optionally with given weights) and logs it the way
:func:`dampeml.registry.logging.log_training` does (tf-keras flavour, inferred signature,
the tf-keras pin; requirements given rather than inferred), tagged
`untrained=true` so nobody mistakes it for a physics model.
Numbers produced with such models test accounting and speed, never physics.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dampeml.models.architecture import Architecture
from dampeml.models.bgo_cnn import with_alignment_head
from dampeml.models.catalog import NETWORK_NAMES, Preset, aligned_name, build, get_network
from dampeml.registry.logging import log_keras_model
from dampeml.registry.tracking import EXPERIMENT, setup_mlflow

BGO_NETWORKS = ("bgo-direction-low", "bgo-direction-mid", "bgo-direction-high")


def ensure_experiment(artifact_dir: str | Path, experiment: str = EXPERIMENT) -> str:
    """Create the experiment with its artifacts under `artifact_dir` (not the working directory).

    `setup_mlflow` puts a new sqlite store's artifacts in ./mlartifacts; a private store for a
    test or a benchmark must keep them beside its database instead.
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"))
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(experiment, artifact_location=Path(artifact_dir).resolve().as_uri())


def log_model(
    architecture: Architecture, model: Any, aliases: Iterable[str], tags: Mapping[str, str] | None = None
) -> str:
    """Log `model` as a new version of the registered model of `architecture`, point `aliases` at it;
    the version."""
    import mlflow

    setup_mlflow()
    client = mlflow.MlflowClient()
    name = architecture.registered_name
    with mlflow.start_run(run_name=f"bootstrap-{name}"):
        mlflow.set_tags({"network": name, **(tags or {})})
        version = log_keras_model(model, architecture)
    for k, v in (tags or {}).items():
        client.set_model_version_tag(name, version, k, str(v))
    for alias in aliases:
        client.set_registered_model_alias(name, alias, version)
    return version


def register_catalog(
    aliases: Iterable[str] = ("production",),
    preset: Preset = "small",
    networks: Iterable[str] | None = None,
    aligned: bool = True,
    models: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Register every catalog network (or `networks`) in the store of MLFLOW_TRACKING_URI.

    Each is built from its `preset` with fresh (untrained) weights unless `models` gives a
    Keras model for that name (e.g. one trained in a test). With `aligned`, the BGO direction
    networks also get their `-aligned` model (the alignment head on the same backbone, identity
    initialised). Returns {registered name: version}.
    """

    aliases = tuple(aliases)
    models = dict(models or {})
    names = tuple(networks) if networks is not None else NETWORK_NAMES
    versions: dict[str, str] = {}
    for name in names:
        get_network(name)  # unknown names fail before anything is logged
    for name in names:
        model = models.get(name)
        trained = model is not None
        if model is None:
            model = build(name, preset=preset, compile=False)
        tags = {"preset": preset, "untrained": str(not trained).lower(), "bootstrap": "true"}
        versions[name] = log_model(Architecture(name, preset), model, aliases, tags)
        if aligned and name in BGO_NETWORKS:
            head = models.get(aligned_name(name)) or with_alignment_head(model, compile=False)
            versions[aligned_name(name)] = log_model(
                Architecture(name, preset, alignment_head=True), head, aliases, tags
            )
    return versions
