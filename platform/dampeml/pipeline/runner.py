"""Run a training recipe: build each step's dataset, train, register, promote, in dependency order.

Every step is keyed by the hash of everything that decides its model: the resolved step (network,
preset, overrides, training settings), its dataset's spec hash and event limit, the registered
versions of its upstream steps (and of an `init_from` model), for a model-seeded dataset the chain
settings that place its RoIs, the package and simulation versions. A finished step writes
`steps/<name>.json` under the run folder; a rerun skips a step whose key is unchanged and whose
version is still registered (or finds a version tagged with the key in the registry: another run
folder's, or a model zoo's imported with its lineage, where the upstream versions the key names
hold the same numbers), so a change reruns exactly the steps downstream of it, and a killed
pipeline resumes at its first unfinished step (a killed training resumes from its last checkpoint:
the Ray Train run is named by the key).

One MLflow parent run per pipeline invocation holds the resolved recipe; each training is its
child (`mlflow.parentRunId`), and each registered version carries its lineage as tags.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dampeml import __version__
from dampeml.datasets.spec import load_spec
from dampeml.detector.simulation import SIMULATION_VERSION
from dampeml.pipeline.plan import describe, step_cost
from dampeml.pipeline.recipe import MODEL_URI_PREFIX, Recipe, Step, pinned_steps
from dampeml.registry.models import (
    PromotionRefusedError,
    RegistryError,
    check_model_uri,
    list_versions,
    promote,
)
from dampeml.registry.tracking import setup_mlflow
from dampeml.training.config import TrainConfig
from dampeml.training.trainer import latest_checkpoint, storage_path, train

logger = logging.getLogger(__name__)

RESOLVED_FILE = "recipe.resolved.yaml"


@dataclass
class StepResult:
    step: str
    network: str
    version: str
    key: str
    status: str  # "trained" or "reused"
    promoted: bool
    note: str = ""
    seconds: float = 0.0
    test: dict[str, float] = field(default_factory=dict)


def _shown(path: Path) -> str:
    """The recipe's path as lineage shows it: relative to where the pipeline ran when it lies below it
    (`recipes/chain.yaml`, the same on every clone), else absolute. A shipped zoo copies this file."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


def run_dir(workdir: Path, recipe: Recipe) -> Path:
    return Path(workdir).resolve() / "pipelines" / f"{recipe.name}-{recipe.profile}"


def step_key(
    recipe: Recipe, name: str, spec_hash: str, upstream: dict[str, str], chain: dict | None = None
) -> str:
    """The hash of everything that decides step `name`'s model (see the module docstring);
    `chain`: the upstream chain settings of a model-seeded dataset (datasets.build.upstream_settings)."""
    step = recipe.steps[name]
    content = {
        "step": step.model_dump(mode="json", exclude={"promote"}),
        "spec_hash": spec_hash,
        "upstream": upstream,
        "package": __version__,
        "simulation": SIMULATION_VERSION,
    }
    if chain:  # absent for the other steps, whose keys stay as they were
        content["upstream_chain"] = chain
    canon = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def _registered_versions(name: str) -> list:

    try:
        return list_versions(name)
    except RegistryError:
        return []


def _finished(state_file: Path, network: str, key: str) -> dict | None:
    """The result of a finished step with this key, or None: from this run folder's state file
    while its version is still registered, else from a registered version tagged with the key
    (trained by another run folder, or imported from a model zoo with its lineage)."""
    versions = _registered_versions(network)
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if state["key"] == key and any(v.version == state["version"] for v in versions):
            return state
    tagged = [v for v in versions if v.tags.get("step_key") == key]
    if not tagged:
        return None
    v = tagged[-1]
    test = {k: float(x) for k, x in v.tags.items() if k.startswith("test_")}  # tagged at registration
    return {
        "step": v.tags.get("pipeline_step", ""),
        "network": network,
        "version": v.version,
        "key": key,
        "promoted": False,
        "note": "found in the registry",
        "test": test,
    }


def _upstream_versions(step: Step, done: dict[str, StepResult]) -> dict[str, str]:
    """{step or model URI: registered version} of what `step` depends on."""

    out = {u: f"{done[u].network}/{done[u].version}" for u in step.upstream}
    if step.init_from and step.init_from.startswith(MODEL_URI_PREFIX):
        name, version = check_model_uri(step.init_from)  # RegistryError saying what exists
        out[step.init_from] = f"{name}/{version}"
    return out


def step_lineage(recipe: Recipe, name: str, key: str, upstream: dict[str, str]) -> dict[str, str]:
    """The tags a step's registered version carries: the recipe, the step and its key, and the
    version of each upstream step (a model URI it fine-tunes from is its `init_from` tag)."""
    return {
        "pipeline": f"{recipe.name}/{recipe.profile}",
        "pipeline_step": name,
        "recipe_hash": recipe.recipe_hash(),
        "step_key": key,
        **{f"upstream.{k}": v for k, v in upstream.items() if not k.startswith(MODEL_URI_PREFIX)},
    }


def _init_uri(step: Step, upstream: dict[str, str]) -> str | None:
    """The version `step` fine-tunes from, as resolved for its key (an alias is not read twice)."""
    return f"{MODEL_URI_PREFIX}{upstream[step.init_from]}" if step.init_from else None


def plan_lines(recipe: Recipe) -> list[str]:
    """What a run would do and cost, a line per step and a total (the dry run's output)."""

    head = f"recipe {recipe.name}, profile {recipe.profile} (hash {recipe.recipe_hash()})"
    lines = [f"{head}, alias {recipe.alias}"]
    gpu_hours, storage = 0.0, 0.0
    for name, s in recipe.steps.items():
        t = s.train
        after = f", after {', '.join(s.upstream)}" if s.upstream else ""
        init = f", fine-tuned from {s.init_from}" if s.init_from else ""
        gpus = f" x {t.gpus_per_worker:g} GPU" if t.gpus_per_worker else ""
        cost = step_cost(s, load_spec(recipe.dataset_paths[name]))
        gpu_hours += cost.gpu_hours
        storage += cost.storage_gb or 0.0
        lines.append(
            f"  {name}: {s.network} ({s.preset}) on {recipe.dataset_paths[name].name}, "
            f"{t.epochs} epochs x {t.workers} workers{gpus}{init}{after}"
            f"{'' if s.promote else ', not promoted'}: {describe(cost)}"
        )
    lines.append(f"total: {storage:.3g} GB of datasets, {gpu_hours:.3g} GPU-hours")
    return lines


def run_pipeline(
    recipe: Recipe,
    workdir: Path,
    log: Callable[[str], None] = logger.info,
) -> dict[str, StepResult]:
    """Run every step of `recipe` not already finished with the same key; {step: result}.

    Ray must be running (the caller starts it: `dampeml.runtime.init_ray`).
    """
    import mlflow

    root = run_dir(workdir, recipe)
    (root / "steps").mkdir(parents=True, exist_ok=True)
    resolved = recipe.to_dict() | {"recipe_hash": recipe.recipe_hash(), "source": _shown(recipe.source)}
    (root / RESOLVED_FILE).write_text(yaml.safe_dump(resolved, sort_keys=False))
    setup_mlflow()
    done: dict[str, StepResult] = {}
    with mlflow.start_run(run_name=f"pipeline {recipe.name}/{recipe.profile}") as parent:
        mlflow.set_tags(
            {"pipeline": recipe.name, "profile": recipe.profile, "recipe_hash": recipe.recipe_hash()}
        )
        mlflow.log_artifact(str(root / RESOLVED_FILE))
        parent_id = parent.info.run_id
    for name in recipe.steps:
        done[name] = _run_step(recipe, name, root, workdir, done, parent_id, log)
    _finish_parent(parent_id, done)
    return done


def _finish_parent(parent_id: str, done: dict[str, StepResult]) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    for r in done.values():
        client.set_tag(parent_id, f"step.{r.step}", f"{r.network} v{r.version} ({r.status})")
        client.log_metric(parent_id, f"seconds.{r.step}", r.seconds)


def _run_step(
    recipe: Recipe,
    name: str,
    root: Path,
    workdir: Path,
    done: dict[str, StepResult],
    parent_id: str,
    log: Callable[[str], None],
) -> StepResult:
    from dampeml.datasets.build import build_dataset, upstream_settings

    step = recipe.steps[name]
    t0 = time.perf_counter()
    spec = load_spec(recipe.dataset_paths[name])
    upstream = _upstream_versions(step, done)
    chain = upstream_settings(spec)
    key = step_key(recipe, name, spec.spec_hash(), upstream, chain)
    state_file = root / "steps" / f"{name}.json"
    state = _finished(state_file, step.network, key)
    if state is not None:
        log(f"{name}: {step.network} v{state['version']} is current (key {key}): reused")
        state = {**state, "step": name}
        state_file.write_text(json.dumps(state))
        return StepResult(**{**state, "status": "reused", "seconds": 0.0})
    # one folder per content: a changed spec, event limit, simulation, upstream model or upstream
    # chain setting builds anew
    limit = f"-n{step.limit_events}" if step.limit_events else ""
    inputs = [spec.spec_hash(), upstream] + ([chain] if chain else [])
    content = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    folder = f"{spec.name}-{content[:8]}-sim{SIMULATION_VERSION}{limit}"
    uri = str(Path(workdir).resolve() / "datasets" / folder)
    # a model-seeded RoI uses the upstream steps' own versions (promoted or not; of a network trained
    # in stages, the latest stage this step runs after), networks the recipe does not train the alias
    pinned = {network: done[u].version for network, u in pinned_steps(recipe, name).items()}
    summary = build_dataset(
        spec,
        uri,
        limit_events=step.limit_events,
        resume=True,
        upstream_alias=recipe.alias,
        upstream_versions=pinned,
    )
    manifest = summary.manifest
    log(
        f"{name}: dataset {manifest['dataset_version']} ({manifest['accounting']['written']} events) at {uri}"
    )
    t = step.train
    cfg = TrainConfig(
        network=step.network,
        dataset=uri,
        workers=t.workers,
        cpus_per_worker=t.cpus_per_worker,
        gpus_per_worker=t.gpus_per_worker,
        epochs=t.epochs,
        preset=step.preset,
        overrides=dict(step.overrides),
        batch_per_worker=t.batch_per_worker,
        base_lr=t.base_lr,
        lr_patience=t.lr_patience,
        steps_per_epoch=t.steps_per_epoch,
        storage=str(Path(workdir).resolve() / "runs"),
        run_name=f"{recipe.name}-{recipe.profile}-{name}-{key}",
        seed=t.seed,
        init_from=_init_uri(step, upstream),
    )
    lineage = {"mlflow.parentRunId": parent_id, **step_lineage(recipe, name, key, upstream)}
    resume = latest_checkpoint(storage_path(cfg), cfg.run_name) is not None  # a killed run goes on
    result = train(cfg, resume=resume, lineage=lineage)
    version = str(result.model_version)
    promoted, note = _promote(step, version, recipe.alias)
    out = StepResult(
        name, step.network, version, key, "trained", promoted, note, time.perf_counter() - t0, result.test
    )
    state_file.write_text(
        json.dumps({k: v for k, v in out.__dict__.items() if k not in ("status", "seconds")})
    )
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.test.items())
    log(f"{name}: {step.network} v{version} ({metrics}); {note} [{out.seconds:.0f} s]")
    return out


def _promote(step: Step, version: str, alias: str) -> tuple[bool, str]:
    """Gated promotion to the profile's alias: (promoted, what happened)."""

    if not step.promote:
        return False, "registered, not promoted (an intermediate step)"
    try:
        return True, promote(step.network, version, alias)
    except PromotionRefusedError as exc:
        return False, f"not promoted: {exc}"
