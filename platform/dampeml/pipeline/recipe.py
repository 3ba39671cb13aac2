"""Training recipes: which networks to train on which datasets, in which order, as typed YAML.

A recipe names its steps (one trained and registered model each) and its profiles (the same
chain at other sizes: `demo` for minutes on a laptop, `reference` for hours on a workstation,
`paper` for the paper's sizes on GPUs). A profile changes settings, never the chain's shape:
it deep-merges every step into its `defaults` (the step's own settings win), then `steps.<name>`
into that step, and may pick
each spec's sized variant (`dataset_variant: small` reads `datasets/X-small.yaml` for
`datasets/X.yaml`). A profile may add steps (`add_steps`) that train the recipe's own networks
further, e.g. fine-tuning stages on a harder energy range; the chain's networks stay the same,
and the last step that trains a network in dependency order makes the version the chain uses.
The result is validated as strictly as a dataset spec: unknown keys, an
unknown network, a step that needs a step that does not exist, or a cycle are refused with the
file and the field named. Paths in a recipe are relative to the recipe file.

Its hash (of the resolved content, spec paths relative to the recipe) tags every model a run
registers; each step's own key is made by :mod:`.runner`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dampeml.datasets.spec import load_spec, read_yaml_mapping, validation_problems
from dampeml.errors import InputError
from dampeml.models.catalog import get_network
from dampeml.reconstruction.chain import NETWORK_OF_FIELD, UPSTREAM_FIELDS
from dampeml.security import ALIAS_RE

MODEL_URI_PREFIX = "models:/"


class RecipeError(InputError):
    """A recipe or profile that cannot run; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainSettings(_Strict):
    """Ray Train settings of one step (dampeml.training.config.TrainConfig's fields)."""

    #: passes over the train split
    epochs: int = Field(6, ge=1)
    #: Ray Train workers (data parallel; the learning rate scales with them)
    workers: int = Field(2, ge=1)
    #: CPUs each worker reserves (>= 2: TensorFlow computes on that many threads)
    cpus_per_worker: float = Field(1.0, gt=0)
    #: GPUs each worker reserves
    gpus_per_worker: float = Field(0.0, ge=0)
    #: events per batch on each worker (the paper's 32)
    batch_per_worker: int = Field(32, ge=1)
    base_lr: float | None = Field(None, gt=0, description="default: the preset's rate")
    #: epochs without a better validation loss before the rate is halved
    lr_patience: int = Field(2, ge=0)
    steps_per_epoch: int | None = Field(None, ge=1, description="default: one pass over the train split")
    #: initial weights and shuffling
    seed: int = Field(0, ge=0)


class Step(_Strict):
    """One network trained on one dataset, registered, and (unless `promote: false`) promoted."""

    #: the catalog network it trains (`dampeml train --help` lists them); registered under this name
    network: str
    dataset: str = Field(description="dataset spec file, relative to the recipe")
    #: the network's size: small (CPU minutes) or full (the paper's)
    preset: Literal["small", "full"] = "small"
    overrides: dict[str, Any] = Field(default_factory=dict, description="model config fields")
    limit_events: int | None = Field(None, ge=1, description="events per dataset build (None: all)")
    #: Ray Train settings
    train: TrainSettings = TrainSettings()
    init_from: str | None = Field(None, description="a step's name, or models:/NAME@ALIAS: fine-tune")
    needs: tuple[str, ...] = Field((), description="steps whose models this step's data or init use")
    #: promote the registered version to the profile's alias if it passes the gate
    promote: bool = True

    @model_validator(mode="after")
    def _buildable(self) -> Step:
        spec = get_network(self.network)  # UnknownNetworkError names the known networks
        spec.config_for(self.preset, self.overrides)  # ConfigError names a wrong field
        return self

    @property
    def upstream(self) -> tuple[str, ...]:
        """The steps that must finish first: `needs`, and `init_from` when it names a step."""
        init = (self.init_from,) if self.init_from and not self.init_from.startswith(MODEL_URI_PREFIX) else ()
        return tuple(dict.fromkeys((*self.needs, *init)))


class Profile(_Strict):
    """One way to run the recipe: sizes, the alias, extra fine-tuning stages; never the chain."""

    alias: str = Field("production", pattern=f"^{ALIAS_RE}$", description="alias the promoted models get")
    #: read datasets/X-<variant>.yaml for every step's datasets/X.yaml (e.g. small)
    dataset_variant: str | None = Field(None, pattern=r"^[a-z0-9-]+$")
    defaults: dict[str, Any] = Field(default_factory=dict, description="merged into every step")
    steps: dict[str, dict[str, Any]] = Field(default_factory=dict, description="merged into one step")
    add_steps: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="steps only this profile trains: later stages of the recipe's networks (fine-tuning)",
    )
    #: free text, shown by `dampeml pipeline run --dry-run`
    description: str = ""


class RecipeFile(_Strict):
    #: the recipe's name (the pipeline's MLflow parent run and its lineage tags carry it)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    #: free text
    description: str = ""
    #: the steps by name: each a Step (below) once a profile's settings are merged in
    steps: dict[str, dict[str, Any]]
    #: the profiles by name (`--profile`)
    profiles: dict[str, Profile]


@dataclass(frozen=True)
class Recipe:
    """A recipe resolved for one profile: validated steps in dependency order."""

    name: str
    profile: str
    alias: str
    steps: dict[str, Step]  # in dependency order
    dataset_paths: dict[str, Path]  # step -> its spec file (the variant, resolved)
    source: Path

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "profile": self.profile,
            "alias": self.alias,
            "steps": {
                k: {
                    **s.model_dump(mode="json"),
                    "dataset": os.path.relpath(self.dataset_paths[k], self.source.parent),
                }
                for k, s in self.steps.items()
            },
        }

    def recipe_hash(self) -> str:
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`extra` deep-merged into a copy of `base` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(dict(base))
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _variant(path: Path, variant: str | None) -> Path:
    return path if variant is None else path.with_name(f"{path.stem}-{variant}{path.suffix}")


def _dependency_order(steps: Mapping[str, Step], where: str) -> list[str]:
    """Steps ordered so that each comes after its upstream steps (file order otherwise)."""
    for name, step in steps.items():
        missing = [u for u in step.upstream if u not in steps]
        if missing:
            raise RecipeError(
                f"{where}: step {name!r} needs {missing[0]!r}, which is not a step; steps: {list(steps)}"
            )
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name) :], name])
            raise RecipeError(f"{where}: steps depend on each other in a cycle: {cycle}")
        visiting.append(name)
        for upstream in steps[name].upstream:
            visit(upstream)
        visiting.pop()
        order.append(name)

    for name in steps:
        visit(name)
    return order


def closure(steps: Mapping[str, Step], name: str) -> set[str]:
    """Every step that `name` runs after: its upstream steps and theirs."""
    out: set[str] = set()
    for u in steps[name].upstream:
        out |= {u, *closure(steps, u)}
    return out


def _check_seeded_needs(steps: Mapping[str, Step], datasets: Mapping[str, Path], where: str) -> None:
    """A step whose dataset is seeded by models that the recipe trains must run after a step
    training each of them (the runner pins the last such stage, :func:`pinned_steps`).

    Otherwise the build would read whatever holds the alias, and a retrained upstream model would
    not change the step's key: the step would be reused with a dataset of the old models.
    """

    trained_by = {s.network: name for name, s in steps.items()}  # the last stage in file order
    for name in steps:
        roi = load_spec(datasets[name]).roi
        if roi is None or roi.source != "model":
            continue
        before = closure(steps, name)
        networks = [NETWORK_OF_FIELD[f] for f in UPSTREAM_FIELDS[roi.upstream]]
        missing = [
            trained_by[n]
            for n in networks
            if n in trained_by and not any(steps[u].network == n for u in before)
        ]
        missing = [m for m in missing if not any(m in closure(steps, o) for o in missing)]  # the last ones
        if missing:
            raise RecipeError(
                f"{where}: step {name!r}: its dataset's RoI comes from models this recipe trains "
                f"(roi.upstream {roi.upstream!r}), but it does not need step(s) {missing}: add them to its "
                "`needs`, so that it runs after them and is rebuilt when they change"
            )


def pinned_steps(recipe: Recipe, name: str) -> dict[str, str]:
    """{network: step} of the models a model-seeded dataset of step `name` is built with: for each
    network, the last step in dependency order among those `name` runs after (its latest stage)."""
    before = closure(recipe.steps, name)
    return {s.network: k for k, s in recipe.steps.items() if k in before}


def load_recipe(path: str | Path, profile: str, extra: Mapping[str, Any] | None = None) -> Recipe:
    """The recipe at `path` resolved for `profile`; RecipeError naming the file and field otherwise.

    `extra` is merged into every step last (a command-line setting, e.g. the demo's --epochs).
    """
    path = Path(path).resolve()
    raw = read_yaml_mapping(path, "recipe", RecipeError, "the shipped ones are in recipes/")
    try:
        recipe = RecipeFile.model_validate(raw)
    except ValidationError as exc:
        raise RecipeError(f"{path}: invalid recipe: {validation_problems(exc)}") from None
    if profile not in recipe.profiles:
        raise RecipeError(f"{path}: no profile {profile!r}; profiles: {', '.join(recipe.profiles)}")
    prof = recipe.profiles[profile]
    unknown = sorted(set(prof.steps) - set(recipe.steps))
    if unknown:
        raise RecipeError(f"{path}: profile {profile!r} sets step {unknown[0]!r}, which is not a step")
    clash = sorted(set(prof.add_steps) & set(recipe.steps))
    if clash:
        raise RecipeError(
            f"{path}: profile {profile!r} adds step {clash[0]!r}, which the recipe already has: "
            "set it under `steps`, or give the added step another name"
        )
    networks = {b.get("network") for b in recipe.steps.values()}
    steps: dict[str, Step] = {}
    datasets: dict[str, Path] = {}
    for name, body in {**recipe.steps, **prof.add_steps}.items():
        where = f"{path}: step {name!r} (profile {profile!r})"
        if name in prof.add_steps and body.get("network") not in networks:
            raise RecipeError(
                f"{where}: an added step trains one of the recipe's networks ({sorted(map(str, networks))}), "
                f"not {body.get('network')!r}: a profile never changes the chain"
            )
        merged = _merge(_merge(_merge(prof.defaults, body), prof.steps.get(name, {})), extra or {})
        try:
            steps[name] = Step.model_validate(merged)
        except ValidationError as exc:
            raise RecipeError(f"{where}: {validation_problems(exc)}") from None
        except ValueError as exc:  # UnknownNetworkError, ConfigError
            raise RecipeError(f"{where}: {exc}") from None
        spec = _variant(path.parent / steps[name].dataset, prof.dataset_variant)
        if not spec.is_file():
            raise RecipeError(f"{where}: dataset spec {spec} does not exist")
        datasets[name] = spec
    order = _dependency_order(steps, str(path))
    _check_seeded_needs({k: steps[k] for k in order}, datasets, str(path))
    return Recipe(
        name=recipe.name,
        profile=profile,
        alias=prof.alias,
        steps={k: steps[k] for k in order},
        dataset_paths=datasets,
        source=path,
    )
