"""The model registry: list, show, gated promotion to an alias, and loading by alias.

Promotion compares the primary test metric (MAE for regressions, AUC for classifiers)
recorded on each version; a version worse than the current holder of the alias is
refused unless forced, so `production` never silently gets worse. Versions whose test splits
come from different dataset specs (their `dataset_spec_hash` tags differ) are not compared: the
promotion says so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from dampeml.errors import InputError, JobError
from dampeml.models.architecture import ARCHITECTURE_TAG, Architecture
from dampeml.models.catalog import get_network
from dampeml.registry.tracking import setup_mlflow
from dampeml.security import (
    ALIAS_RE,
    UnsafeModelError,
    audit_model_dir,
    check_config_matches,
    keras_file_config,
    load_weights_only,
)
from dampeml.training.metrics import PRIMARY


class RegistryError(InputError, LookupError):
    """A registered model, version or alias that does not exist; the message says what does."""


class PromotionRefusedError(JobError):
    """The candidate is worse than the current holder of the alias, or a classifier at chance."""


@dataclass
class VersionInfo:
    name: str
    version: str
    aliases: list[str]
    tags: dict[str, str]  # the version's tags (lineage, test metrics as logged, architecture)
    run_id: str
    created: int


def _client():
    import mlflow

    setup_mlflow()
    return mlflow.MlflowClient()


def _task(name: str) -> str:

    return get_network(name.removesuffix("-aligned")).task


def list_versions(name: str | None = None) -> list[VersionInfo]:
    client = _client()
    names = [name] if name else sorted(m.name for m in client.search_registered_models())
    out = []
    for n in names:
        try:
            versions = client.search_model_versions(f"name='{n}'")
        except Exception as exc:  # noqa: BLE001  (MLflow raises its own exception types)
            raise RegistryError(f"no registered model {n!r}: {exc}") from None
        if not versions and name:
            raise RegistryError(f"no registered model {n!r}; `dampeml models list` shows what exists")
        aliases = _aliases(client, n)
        for v in sorted(versions, key=lambda v: int(v.version)):
            version = str(v.version)  # MLflow hands out ints or strings depending on the store
            out.append(
                VersionInfo(
                    n,
                    version,
                    [a for a, ver in aliases.items() if str(ver) == version],
                    dict(v.tags),
                    v.run_id,
                    v.creation_timestamp,
                )
            )
    return out


def _aliases(client, name: str) -> dict[str, str]:
    return dict(client.get_registered_model(name).aliases)


def version_of(name: str, alias: str) -> str:
    """The version behind `name@alias`; RegistryError saying what exists when there is none."""
    client = _client()
    try:
        aliases = _aliases(client, name)
    except Exception:  # noqa: BLE001  (MLflow raises its own exception types)
        raise RegistryError(
            f"no registered model {name!r}; `dampeml models list` shows what exists"
        ) from None
    if alias not in aliases:
        raise RegistryError(
            f"registered model {name!r} has no alias {alias!r} (@{alias}; aliases: "
            f"{', '.join(sorted(aliases)) or 'none'}): `dampeml models list` shows what is registered; "
            f"register a trained {name} (`dampeml train ...`) and point the alias at it: "
            f"`dampeml models promote {name} VERSION --alias {alias}`"
        )
    return str(aliases[alias])


def registered_architecture(name: str, version: str):
    """How `name` v`version` is built (its `architecture` tag), validated; ArchitectureError otherwise."""

    try:
        tags = _client().get_model_version(name, version).tags
    except Exception:  # noqa: BLE001  (MLflow raises its own exception types)
        raise RegistryError(f"{name} has no version {version}; `dampeml models show {name}`") from None
    return Architecture.from_json(tags.get(ARCHITECTURE_TAG), f"models:/{name}/{version}")


#: A classifier whose test AUC is at most this guesses: it is never promoted without `force`.
CHANCE_AUC = 0.55


def promote(name: str, version: str, alias: str = "production", force: bool = False) -> str:
    """Point `alias` at `version` if its test metric is not worse than the current holder's
    (and, for a classifier, better than chance)."""
    client = _client()
    versions = {v.version: v for v in list_versions(name)}
    if version not in versions:
        raise RegistryError(f"{name} has no version {version} (versions: {', '.join(versions) or 'none'})")
    metric, higher_better = PRIMARY[_task(name)]
    auc = versions[version].tags.get("test_auc") if metric == "test_auc" else None
    if auc is not None and float(auc) <= CHANCE_AUC and not force:
        raise PromotionRefusedError(
            f"{name} v{version} has test_auc={float(auc):.3g}, no better than chance (<= {CHANCE_AUC}): "
            "did every training batch hold both classes? Use --force to promote anyway"
        )
    current = _aliases(client, name).get(alias)
    current = None if current is None else str(current)
    message = f"{name} version {version} is now @{alias}"
    if current and current != version and not force:
        new = versions[version].tags.get(metric)
        old = versions[current].tags.get(metric)
        if new is None:
            raise PromotionRefusedError(
                f"{name} v{version} has no {metric} recorded; use --force to promote anyway"
            )
        ours, theirs = (versions[v].tags.get("dataset_spec_hash") for v in (version, current))
        if old is not None and ours and theirs and ours != theirs:  # other test events: not comparable
            old = None
            message += f" (not compared with v{current}: its test split is of another dataset spec)"
        if old is not None:
            worse = float(new) < float(old) if higher_better else float(new) > float(old)
            if worse:
                raise PromotionRefusedError(
                    f"{name} v{version} has {metric}={float(new):.5g}, worse than @{alias} v{current} "
                    f"({float(old):.5g}); use --force to promote anyway"
                )
            message += f" ({metric} {float(old):.5g} -> {float(new):.5g})"
    client.set_registered_model_alias(name, alias, version)
    return message


def load_model(uri: str):
    """Load `models:/NAME@ALIAS` (or `models:/NAME/VERSION`) as an uncompiled tf-keras model, safely.

    :func:`safe_load_model` audits the artifact and loads it as data
    (`mlflow.tensorflow.load_model` would unpickle files of the artifact).
    """
    import mlflow

    if not uri.startswith("models:/"):
        raise RegistryError(f"{uri!r} is not a registry URI: use models:/NAME@ALIAS")
    try:
        return safe_load_model(uri)
    except RegistryError as exc:
        raise RegistryError(f"cannot load {uri}: {exc}") from None
    except mlflow.exceptions.MlflowException as exc:
        raise RegistryError(
            f"cannot load {uri}: {exc.message.splitlines()[0]}; "
            "`dampeml models list` shows the registered models and aliases"
        ) from None


def check_model_uri(uri: str) -> tuple[str, str]:
    """`models:/NAME@ALIAS` or `models:/NAME/VERSION` that exists in the registry; (name, version).

    Raises RegistryError saying what exists otherwise.
    """
    m = re.fullmatch(rf"models:/([A-Za-z0-9][A-Za-z0-9._-]*)(?:@({ALIAS_RE})|/(\d+))", uri or "")
    if not m:
        raise RegistryError(f"{uri!r} is not a registry URI: use models:/NAME@ALIAS or models:/NAME/VERSION")
    name, alias, version = m.groups()
    if alias:
        return name, version_of(name, alias)
    versions = [v.version for v in list_versions(name)]
    if version not in versions:
        raise RegistryError(
            f"{name} has no version {version} (versions: {', '.join(versions)}); `dampeml models show {name}`"
        )
    return name, version


def model_exists(uri: str) -> bool:
    try:
        check_model_uri(uri)
    except RegistryError:
        return False
    return True


def safe_load_model(uri: str, dst_path: str | os.PathLike | None = None):
    """Load a registered tf-keras model (`models:/NAME@ALIAS`) as data, never as code.

    The model is rebuilt by the project's builders from the architecture record the registry
    holds for the version (:mod:`dampeml.models.architecture`); from the artifact only the
    weights are read, after :func:`audit_model_dir` and :func:`check_config_matches` pass. So
    no layer, op or pickle named by the artifact is ever built or run. Use it instead of
    `mlflow.tensorflow.load_model` (unpickles the artifact's global_custom_objects.cloudpickle)
    or `keras.models.load_model` (builds whatever layers config.json names, TensorFlowOpLayer
    included, even with safe_mode).
    """
    import mlflow

    setup_mlflow()
    name, version = check_model_uri(uri)
    where = f"{uri} (models:/{name}/{version})"
    architecture = registered_architecture(name, version)
    if architecture.registered_name != name:
        raise UnsafeModelError(
            f"{where}: its architecture record describes {architecture.registered_name!r}, "
            f"not {name!r}; refused"
        )
    local = mlflow.artifacts.download_artifacts(  # the resolved version: an alias may move meanwhile
        artifact_uri=f"models:/{name}/{version}", dst_path=None if dst_path is None else str(dst_path)
    )
    path = audit_model_dir(local)
    model = architecture.build()
    check_config_matches(keras_file_config(path), model, where)
    load_weights_only(model, path, where)
    return model
