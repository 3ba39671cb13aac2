"""Ablation campaigns: what to compare, as a typed object loaded from YAML.

A campaign names one network, its dataset spec, a search space and how to run the trials.
Search-space keys say what they change:

- ``model.<field>``: a config field of the network (an override, e.g. ``model.kernel_size``);
- ``model``: a choice between sets of overrides, for fields that only mean something together (e.g.
  ``{attention_at: [2], attention_kernel: 4}`` against ``{}``, no attention);
- ``dataset.<dotted.path>``: a field of the dataset spec (``dataset.selection.electron_fraction``,
  ``dataset.roi.zthr``; list items by index, ``dataset.sources.0.seed``);
- ``dataset``: a choice between whole dataset spec files (e.g. an energy range vs the full range);
- ``train.<field>``: a training setting (``base_lr``, ``batch_per_worker``, ``lr_patience``, ``epochs``;
  transfer learning: ``init_from``, a registered version to start from or null for from scratch, and
  ``frozen_backbone``, true to train the head only).

`baseline` names one point of the search space (e.g. from scratch, all layers, all epochs): the report
then gives every point's metric and training time relative to it (the transfer-learning table).

Every value of a grid or choice is checked here, before Ray starts: it must build a valid model
config or dataset spec, whose file sources lie under the allowed storage
(`dampeml.security`, DAMPEML_ALLOWED_STORAGE). Paths in a campaign file are relative to that file.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dampeml.datasets.spec import DatasetSpec, SpecError, load_spec, read_yaml_mapping, validation_problems
from dampeml.errors import InputError
from dampeml.models.catalog import get_network
from dampeml.security import StorageNotAllowedError, check_spec_storage

#: Training settings a campaign may search over (the rest belong to the campaign itself).
TRAIN_FIELDS = ("base_lr", "batch_per_worker", "lr_patience", "epochs", "init_from", "frozen_backbone")
#: Metrics a trial reports every epoch (Ray Train) or once at the end (test split), per task.
EPOCH_METRICS = {
    "regression": ("loss", "mae", "val_loss", "val_mae"),
    "classification": ("loss", "auc", "accuracy", "val_loss", "val_auc", "val_accuracy"),
}
TEST_METRICS = {
    "regression": ("test_mse", "test_mae", "test_angle68_deg", "test_pos68_mm", "train_seconds"),
    "classification": ("test_auc", "test_accuracy", "test_bce", "train_seconds"),
}
#: the time a trial trained (its epochs, validation and checkpoints; not Ray's start-up)
TIME_METRIC = "train_seconds"


class CampaignError(InputError):
    """A campaign that cannot run; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sampler(_Strict):
    """One search dimension: exactly one of grid (every value), choice (random pick), uniform, loguniform."""

    #: every value, each a point of the grid
    grid: list[Any] | None = None
    #: one value drawn at random per sample (`num_samples`)
    choice: list[Any] | None = None
    #: [low, high]: a value drawn uniformly
    uniform: tuple[float, float] | None = None
    #: [low, high], low > 0: a value drawn uniformly in log
    loguniform: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Sampler:
        given = [k for k in ("grid", "choice", "uniform", "loguniform") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of grid, choice, uniform, loguniform (got {given or 'none'})")
        values = self.grid if self.grid is not None else self.choice
        if values is not None and not values:
            raise ValueError(f"{given[0]} needs at least one value")
        bounds = self.uniform or self.loguniform
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"{given[0]} needs [low, high] with low < high, got {list(bounds)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs low > 0")
        return self

    @property
    def values(self) -> list[Any] | None:
        """The finite set of values (grid or choice), None for a continuous range."""
        return self.grid if self.grid is not None else self.choice


class Scheduler(_Strict):
    """`none`: every trial runs all epochs. `asha`: stop the poor ones early (on the campaign metric)."""

    #: none or asha
    type: Literal["none", "asha"] = "none"
    grace_period: int = Field(1, ge=1, description="epochs every trial runs before it can be stopped")
    #: asha: the share of trials kept at each rung is 1 / this
    reduction_factor: float = Field(2.0, gt=1.0)


class Resources(_Strict):
    """What each trial reserves on the Ray cluster."""

    workers_per_trial: int = Field(1, ge=1, description="Ray Train workers of each trial")
    #: CPUs each Ray Train worker reserves
    cpus_per_worker: float = Field(1.0, gt=0)
    #: GPUs each Ray Train worker reserves
    gpus_per_worker: float = Field(0.0, ge=0)
    trial_cpus: float = Field(0.1, gt=0, description="the trial function itself (drives its Ray Train run)")
    max_concurrent_trials: int = Field(
        1, ge=1, description="trials at once; each needs its workers + 1 CPU for the data feed"
    )


class Campaign(_Strict):
    """A grid or random search: each trial builds (or reuses) its dataset and trains one network."""

    #: the campaign's name (lower case, digits, `.`, `_`, `-`): its MLflow parent run
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    #: free text
    description: str = ""
    #: the catalog network every trial trains
    network: str
    #: the network's size: small or full
    preset: Literal["small", "full"] = "small"
    dataset: str = Field(description="dataset spec file, relative to the campaign file")
    test_dataset: str | None = Field(
        None, description="spec whose test split every trial is evaluated on (default: the trial's own)"
    )
    limit_events: int | None = Field(None, gt=0, description="cap on events read per dataset build")
    #: key -> dimension; keys: `model.<field>` (network config), `train.<setting>`, `dataset` (another
    #: spec) or `dataset.<dotted.path>` (a field of the spec)
    search_space: dict[str, Sampler] = Field(min_length=1)
    repeats: int = Field(1, ge=1, description="seeds per point of the search space (spread over seeds)")
    num_samples: int = Field(1, ge=1, description="random draws of choice/uniform dimensions")
    #: early stopping of poor trials
    scheduler: Scheduler = Scheduler()
    #: the metric trials are compared on (a logged metric, e.g. val_loss, test_auc)
    metric: str = "val_loss"
    #: whether a lower (min) or higher (max) metric is better
    mode: Literal["min", "max"] = "min"
    compare: list[str] = Field(default_factory=list, description="further metrics shown in the table")
    #: epochs of each trial (unless the search space sets train.epochs)
    epochs: int = Field(3, ge=1)
    #: the point (search key -> value) every other one is compared with in the report, e.g. the
    #: network trained from scratch; None: no relative columns
    baseline: dict[str, Any] | None = None
    steps_per_epoch: int | None = Field(None, ge=1, description="default: one pass over the train split")
    batch_per_worker: int = Field(32, ge=1, description="the paper's 32; smaller for tiny test datasets")
    base_lr: float | None = Field(None, gt=0, description="default: the network preset's rate")
    #: what each trial reserves
    resources: Resources = Resources()

    #: not to be written: the loader sets it to the campaign file's path
    source: str = ""

    def spec_path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else (Path(self.source).parent / p)

    def campaign_hash(self) -> str:
        """Same meaning, same hash: a resume must use the campaign it started with."""
        canon = json.dumps(self.model_dump(mode="json", exclude={"source"}), sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    # --- the search space ---------------------------------------------------------------------
    def keys(self, prefix: str) -> list[str]:
        return [k for k in self.search_space if k.startswith(prefix)]

    def dataset_keys(self) -> list[str]:
        return [k for k in self.search_space if k == "dataset" or k.startswith("dataset.")]

    def dataset_variants(self) -> list[dict[str, Any]]:
        """Every assignment of the dataset keys (the datasets to build before the trials)."""
        keys = self.dataset_keys()
        combos = itertools.product(*(self.search_space[k].values for k in keys))
        return [dict(zip(keys, c, strict=True)) for c in combos]

    def variant_spec(self, assignment: dict[str, Any]) -> DatasetSpec:
        """The dataset spec of one assignment of the dataset keys."""
        base = load_spec(self.spec_path(assignment.get("dataset", self.dataset)))
        changes = {k[len("dataset.") :]: v for k, v in assignment.items() if k.startswith("dataset.")}
        return apply_spec_changes(base, changes) if changes else base

    def n_trials(self) -> int:
        grid = 1
        for s in self.search_space.values():
            grid *= len(s.grid) if s.grid is not None else 1
        return grid * self.repeats * self.num_samples


def variant_key(assignment: dict[str, Any]) -> str:
    """The name of a dataset variant (its dataset-key assignment), the same on driver and trials."""
    return json.dumps(assignment, sort_keys=True)


def apply_spec_changes(spec: DatasetSpec, changes: dict[str, Any]) -> DatasetSpec:
    """`spec` with fields set by dotted path (list items by index); SpecError on a bad path or value."""
    data = copy.deepcopy(spec.model_dump(mode="json"))
    for path, value in changes.items():
        node: Any = data
        parts = path.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise SpecError(f"dataset.{path}: {part!r} is not an index of a {len(node)}-item list")
                key: Any = int(part)
            elif isinstance(node, dict):
                if part not in node:
                    known = ", ".join(sorted(node))
                    raise SpecError(f"dataset.{path}: no field {part!r} here (fields: {known})")
                key = part
            else:
                raise SpecError(f"dataset.{path}: {'.'.join(parts[:i])} is a value, not a section")
            if last:
                node[key] = value
            else:
                if node[key] is None:
                    raise SpecError(f"dataset.{path}: the spec has no {'.'.join(parts[: i + 1])} section")
                node = node[key]
    try:
        return DatasetSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"dataset fields {changes}: {validation_problems(exc)}") from None


def load_campaign(path: str | Path) -> Campaign:
    """Load and check a campaign: schema, network, every search value, metric; errors name file and field."""
    path = Path(path)
    raw = read_yaml_mapping(path, "campaign file", CampaignError, "the shipped ones are in campaigns/")
    if "source" in raw:
        raise CampaignError(f"{path}: source: unknown field (set by the loader)")
    try:
        campaign = Campaign.model_validate({**raw, "source": str(path.resolve())})
    except ValidationError as exc:
        raise CampaignError(f"{path}: invalid campaign: {validation_problems(exc)}") from None
    try:
        check_campaign(campaign)
    except StorageNotAllowedError as exc:  # before ValueError: it is bad input too, of its own kind
        raise StorageNotAllowedError(f"{path}: {exc}") from None
    except (SpecError, ValueError) as exc:
        raise CampaignError(f"{path}: {exc}") from None
    return campaign


def check_campaign(c: Campaign) -> None:
    """Everything that can be checked without Ray: the network, each search value, the metric, the
    storage every dataset variant reads (StorageNotAllowedError)."""

    try:
        net = get_network(c.network)
    except LookupError as exc:
        raise ValueError(f"network: {exc}") from None
    for rel in (c.dataset, c.test_dataset):
        if rel is not None:
            spec = load_spec(c.spec_path(rel))
            check_spec_storage(spec, c.spec_path(rel))
            if spec.kind != net.dataset_kind:
                raise ValueError(
                    f"{rel} is a {spec.kind!r} dataset; {c.network} trains on {net.dataset_kind!r} datasets"
                )
    for key, sampler in c.search_space.items():
        where = f"search_space.{key}"
        prefix = key.split(".", 1)[0]
        if prefix not in ("model", "dataset", "train") or (prefix == "train" and "." not in key):
            raise ValueError(
                f"{where}: a key is model.<config field>, model (sets of fields), dataset.<spec field "
                f"path>, dataset (spec files) or train.<{'|'.join(TRAIN_FIELDS)}>"
            )
        if key == "model" and sampler.values is None:
            raise ValueError(f"{where}: model needs grid or choice (each value is a set of config fields)")
        if prefix == "dataset" and sampler.values is None:
            raise ValueError(
                f"{where}: dataset fields need grid or choice (each value is a dataset to build)"
            )
        values = sampler.values if sampler.values is not None else list(sampler.uniform or sampler.loguniform)
        for value in values:
            try:
                if key == "model":
                    if not isinstance(value, dict):
                        raise ValueError("each value is a mapping of config fields ({} for the preset)")
                    net.config_for(c.preset, value)
                elif prefix == "model":
                    net.config_for(c.preset, {key[len("model.") :]: value})
                elif prefix == "train":
                    _check_train_value(key[len("train.") :], value)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{where}: value {value!r}: {exc}") from None
    for assignment in c.dataset_variants():
        spec = c.variant_spec(assignment)
        if assignment:  # a search value may point a source elsewhere (dataset.sources.0.glob)
            spec_file = c.spec_path(assignment.get("dataset", c.dataset))
            check_spec_storage(spec, f"{spec_file} (search_space {', '.join(assignment)})")
        if spec.kind != net.dataset_kind:
            raise ValueError(f"search_space.dataset: {assignment} gives a {spec.kind!r} dataset")
    known = EPOCH_METRICS[net.task] + TEST_METRICS[net.task]
    for where, name in [("metric", c.metric), *(("compare", m) for m in c.compare)]:
        if name not in known:
            raise ValueError(f"{where}: unknown metric {name!r} for a {net.task} network; use one of {known}")
    if c.baseline is not None:
        for key, value in c.baseline.items():
            values = c.search_space[key].values if key in c.search_space else None
            if values is None or value not in values:
                raise ValueError(
                    f"baseline: {key}={value!r} is not a grid or choice value of the search space"
                )
        if set(c.baseline) != set(c.search_space):
            raise ValueError(f"baseline: give a value for every search key ({', '.join(c.search_space)})")
    if c.scheduler.type == "asha" and "train.epochs" in c.search_space:
        raise ValueError(
            "search_space.train.epochs: trials of different lengths cannot share an ASHA schedule"
        )
    if c.scheduler.type == "asha" and c.metric not in EPOCH_METRICS[net.task]:
        raise ValueError(
            f"metric: ASHA stops trials on a metric reported every epoch ({EPOCH_METRICS[net.task]}), "
            f"not {c.metric!r} (test metrics exist only at the end): use scheduler none or a val_ metric"
        )


def _check_train_value(field: str, value: Any) -> None:
    """ValueError unless `value` fits training setting `field`."""
    if field not in TRAIN_FIELDS:
        raise ValueError(f"unknown training field; use one of {', '.join(TRAIN_FIELDS)}")
    if field == "init_from" and not (
        value is None or (isinstance(value, str) and value.startswith("models:/"))
    ):
        raise ValueError("init_from is models:/NAME@ALIAS, models:/NAME/VERSION or null (from scratch)")
    if field == "frozen_backbone" and not isinstance(value, bool):
        raise ValueError("frozen_backbone is true or false")
    if field in ("epochs", "batch_per_worker", "lr_patience") and (
        isinstance(value, bool) or not isinstance(value, int) or value < (0 if field == "lr_patience" else 1)
    ):
        raise ValueError(f"{field} is a whole number >= {0 if field == 'lr_patience' else 1}")


def init_from_values(c: Campaign) -> list[str]:
    """The registered versions the trials start from (checked against the registry before any trial)."""
    sampler = c.search_space.get("train.init_from")
    return [v for v in (sampler.values or []) if v] if sampler is not None else []


def decode_params(c: Campaign, params: dict[str, Any]) -> dict[str, Any]:
    """Trial values by search key (grid/choice values travel through Tune as JSON strings)."""
    return {k: json.loads(v) if c.search_space[k].values is not None else v for k, v in params.items()}
