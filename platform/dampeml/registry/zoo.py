"""The model zoo: registered models written out as files that ship with the project, read back as data.

A zoo folder holds one Keras v3 file per model (`NAME.keras`, the file the registry stored) and
an index, `zoo.json`: the alias the models held, the package and simulation versions, and per
model its architecture record, the file's sha256, the registry version and run it came from,
its lineage tags (recipe, profile, recipe hash, step key, upstream versions, dataset version,
git commit), its test metrics and its pipeline step's wall time; `recipe.resolved.yaml` is the pipeline's
resolved recipe when the models came from one.

Import treats every file as untrusted data, exactly as `registry.models.safe_load_model` treats a
registered artifact: the network is rebuilt by the project's builders from the index's
architecture record, the file's config.json must name the same layers, and only its weights are
read. The checksum catches a truncated or swapped file with a clear message; it is not what makes
loading safe. Each model is then registered in the local store under the zoo's alias, tagged
with its lineage; a rerun that finds the same file already behind the alias does nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dampeml import __version__
from dampeml.detector.simulation import SIMULATION_VERSION
from dampeml.errors import InputError
from dampeml.models.architecture import ARCHITECTURE_TAG, Architecture
from dampeml.reconstruction.config import ChainConfig
from dampeml.registry.models import RegistryError, list_versions
from dampeml.security import (
    audit_model_dir,
    check_alias,
    check_artifact_path,
    check_config_matches,
    keras_file_config,
    load_weights_only,
)

INDEX = "zoo.json"
RECIPE_FILE = "recipe.resolved.yaml"
#: The version tag that says which zoo file a registered version was imported from.
SHA_TAG = "zoo_sha256"
#: Version tags carried from the registry into the index (and back as tags on import).
LINEAGE_TAGS = (
    "pipeline",
    "pipeline_step",
    "recipe_hash",
    "step_key",
    "dataset_version",
    "dataset_spec_hash",
    "init_from",
    "git_commit",
)


class ZooError(InputError):
    """A zoo folder or index that cannot be exported or imported; the message says what to do."""


@dataclass(frozen=True)
class ImportedModel:
    name: str
    version: str
    status: str  # "imported" or "current"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def export_zoo(
    alias: str, out: str | Path, coarse_below_tev: float = 1.0, names: Sequence[str] | None = None
) -> Path:
    """Write every registered model at `alias` (or only those `names`) to `out` (files + zoo.json); the
    index's path. `names` serves a registry that two recipes promoted to the same alias.

    `coarse_below_tev` is the chain setting the models were trained for (inf: the coarse step at
    every energy); the index keeps it, and whoever runs the zoo's chain uses it.
    """
    import mlflow

    check_alias(alias)
    chosen = [v for v in list_versions() if alias in v.aliases]
    if not chosen:
        raise ZooError(
            f"no registered model has the alias {alias!r}: `dampeml models list` shows the aliases"
        )
    if names is not None:
        wanted = set(names)
        if not wanted:
            raise ZooError("no model named to export: give names, or leave the names out to export them all")
        missing = sorted(wanted - {v.name for v in chosen})
        if missing:
            raise ZooError(
                f"no version of {', '.join(missing)} has the alias {alias!r}: `dampeml models list` shows "
                "the models and their aliases"
            )
        chosen = [v for v in chosen if v.name in wanted]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient()
    models: dict[str, Any] = {}
    parents: set[str] = set()
    for v in chosen:
        if not v.tags.get(ARCHITECTURE_TAG):
            raise ZooError(
                f"{v.name} v{v.version} (@{alias}) has no architecture record: it cannot be loaded as "
                "data, so it is not exported; retrain it (`dampeml pipeline run ...` or `dampeml train`)"
            )
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{v.name}/{v.version}", dst_path=tmp
            )
            shutil.copyfile(audit_model_dir(local), out / f"{v.name}.keras")
        run = client.get_run(v.run_id)
        parent = run.data.tags.get("mlflow.parentRunId")
        if parent:
            parents.add(parent)
        models[v.name] = {
            "file": f"{v.name}.keras",
            "sha256": _sha256(out / f"{v.name}.keras"),
            "architecture": json.loads(v.tags[ARCHITECTURE_TAG]),
            "registry": {"version": v.version, "run_id": v.run_id},
            "lineage": {k: v.tags[k] for k in LINEAGE_TAGS if v.tags.get(k)}
            | {k: t for k, t in v.tags.items() if k.startswith("upstream.")},
            "test": {k: float(x) for k, x in v.tags.items() if k.startswith("test_")},
            "step_seconds": _step_seconds(client, parent, v.tags.get("pipeline_step")),
        }
    _copy_recipe(client, parents, set(models), out)
    # the simulation the models were trained on (their datasets' versions end in +sim<N>)
    sims = {
        m.group(1)
        for e in models.values()
        if (m := re.search(r"\+sim(\d+)", e["lineage"].get("dataset_version", "")))
    }
    if len(sims) > 1:
        raise ZooError(
            f"the models at @{alias} were trained on simulation versions {sorted(sims)}: retrain them alike"
        )
    index = {
        "alias": alias,
        "package_version": __version__,
        "simulation_version": int(sims.pop()) if sims else SIMULATION_VERSION,
        "chain": {"coarse_below_tev": str(coarse_below_tev)},
        "models": dict(sorted(models.items())),
    }
    path = out / INDEX
    path.write_text(json.dumps(index, indent=2, sort_keys=False) + "\n")
    return path


def _copy_recipe(client, parents: set[str], names: set[str], out: Path) -> None:
    """Copy the resolved recipe of the newest pipeline run among `parents` whose steps train every one of
    `names` (a rerun reuses older steps' models; a model reused from another recipe's run, as the chain
    reuses the electron-flux recipe's classifier, does not make that recipe the zoo's). Optional."""
    import mlflow

    for run_id in sorted(parents, key=lambda r: client.get_run(r).info.start_time, reverse=True):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                got = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=RECIPE_FILE, dst_path=tmp
                )
                steps = (yaml.safe_load(Path(got).read_text()) or {}).get("steps", {})
            except Exception:  # noqa: BLE001  (MLflow raises its own types; the recipe is optional)
                continue
            if names <= {step.get("network") for step in steps.values()}:
                shutil.copyfile(got, out / RECIPE_FILE)
                return


def _step_seconds(client, parent: str | None, step: str | None) -> float | None:
    """Wall time of the pipeline step that made the model (build, training, registration)."""
    if not parent or not step:
        return None
    value = client.get_run(parent).data.metrics.get(f"seconds.{step}")
    return None if value is None else round(value, 1)


def read_index(folder: str | Path) -> dict[str, Any]:
    """The zoo's index, checked for the fields import needs; ZooError naming what is wrong."""
    path = Path(folder) / INDEX
    try:
        index = json.loads(path.read_text())
    except OSError as exc:
        raise ZooError(
            f"{path}: cannot read the zoo's index ({exc.strerror}); is {folder} a zoo folder?"
        ) from None
    except ValueError as exc:
        raise ZooError(f"{path}: not JSON ({exc})") from None
    for key in ("alias", "simulation_version", "models"):
        if key not in index:
            raise ZooError(f"{path}: no {key!r} field; export the zoo again (`dampeml models export-zoo`)")
    for name, entry in index["models"].items():
        missing = {"file", "sha256", "architecture"} - set(entry)
        if missing:
            raise ZooError(f"{path}: model {name!r} lacks {sorted(missing)}")
    return index


def chain_config(index: dict[str, Any]):
    """The ChainConfig the zoo's models were trained for (the paper's switch when unrecorded)."""

    return ChainConfig().with_coarse_below_tev(float(index.get("chain", {}).get("coarse_below_tev", 1.0)))


def stale_note(index: dict[str, Any], recipe_command: str) -> str | None:
    """Why the zoo's models no longer fit this simulation, with the command that retrains them."""
    if str(index["simulation_version"]) == str(SIMULATION_VERSION):
        return None
    return (
        f"the {index['alias']!r} models were trained on simulation version {index['simulation_version']}, "
        f"this is version {SIMULATION_VERSION}: they are stale. Retrain them with `{recipe_command}`"
    )


def _entry_file(folder: Path, name: str, entry: dict[str, Any]) -> tuple[Path, Architecture, str]:
    """The model file of a zoo entry, checked against its sha256, and its architecture record."""
    path = folder / check_artifact_path(entry["file"])
    where = f"zoo model {name} ({path})"
    if not path.is_file():
        raise ZooError(f"{where}: the file is missing; fetch the repository again or re-export the zoo")
    if _sha256(path) != entry["sha256"]:
        raise ZooError(
            f"{where}: its sha256 differs from {folder / INDEX}; the file was changed or truncated"
        )
    architecture = Architecture.from_json(json.dumps(entry["architecture"]), where)
    if architecture.registered_name != name:
        raise ZooError(f"{where}: its architecture record describes {architecture.registered_name!r}")
    return path, architecture, where


def _load(path: Path, architecture: Architecture, where: str):
    """The model built by our builders, the file's weights loaded as data."""
    model = architecture.build()
    check_config_matches(keras_file_config(path), model, where)
    load_weights_only(model, path, where)
    return model


def load_zoo_model(folder: str | Path, name: str):
    """One model of the zoo in `folder`, checked and loaded as data, without the registry."""
    folder = Path(folder)
    index = read_index(folder)
    if name not in index["models"]:
        raise ZooError(f"the zoo in {folder} has no model {name!r}; it has {sorted(index['models'])}")
    return _load(*_entry_file(folder, name, index["models"][name]))


def import_zoo(folder: str | Path, alias: str | None = None) -> list[ImportedModel]:
    """Register every model of the zoo in `folder` under `alias` (default: the zoo's), loaded as data."""
    from dampeml.registry.bootstrap import log_model

    folder = Path(folder)
    index = read_index(folder)
    alias = check_alias(alias or index["alias"])
    out = []
    for name, entry in index["models"].items():
        path, architecture, where = _entry_file(folder, name, entry)
        try:
            current = [v for v in list_versions(name) if alias in v.aliases]
        except RegistryError:
            current = []
        if current and current[0].tags.get(SHA_TAG) == entry["sha256"]:
            out.append(ImportedModel(name, current[0].version, "current"))
            continue
        model = _load(path, architecture, where)
        tags = {
            SHA_TAG: entry["sha256"],
            "zoo": str(folder.name),
            "zoo_simulation_version": str(index["simulation_version"]),
            **{k: str(v) for k, v in entry.get("lineage", {}).items()},
            **{k: str(v) for k, v in entry.get("test", {}).items()},
        }
        out.append(ImportedModel(name, log_model(architecture, model, [alias], tags), "imported"))
    return out
