"""Dataset specs: what a dataset is, as a typed object loaded from YAML.

A spec is declarative (weaver-core style): sources, selection, features, targets, split,
sharding. Its hash (of the normalised content, not the file's bytes) names the dataset
version, so the same spec always means the same data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dampeml.errors import InputError
from dampeml.io.schema import PDG
from dampeml.security import ALIAS_RE

Feature = Literal["bgo_image", "stk_clusters", "hough_hits", "shower_variables"]
Target = Literal["track", "hough_offsets", "inelastic", "particle", "energy"]
Kind = Literal[
    "bgo-direction", "stk-hough", "inelastic-raw-stk", "inelastic-hough", "electron-proton", "bgo-energy"
]


T = TypeVar("T")


class SpecError(InputError):
    """A spec that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileSource(_Strict):
    """Existing event files (MC or flight), by glob."""

    #: the source kind
    type: Literal["files"] = "files"
    #: ROOT event files: a path or a glob (relative to where the build runs)
    glob: str
    events_per_unit: int = Field(5000, gt=0, description="events per work unit (one shard per split)")


class ParticleRecipe(_Strict):
    """Events of one particle: an isotropic flux with a power-law spectrum."""

    #: events to simulate
    events: int = Field(gt=0)
    #: lowest true energy (GeV)
    energy_min: float = Field(gt=0)
    #: highest true energy (GeV)
    energy_max: float = Field(gt=0)
    #: dN/dE ~ E^-index (1: flat in log E)
    spectrum_index: float = 1.0


class DetectorConditions(_Strict):
    """A changed detector, simulated with truth: e.g. a BGO moved after launch, the target of a
    transfer-learning study (networks trained on the nominal detector, retrained for this one)."""

    #: BGO frame shift relative to the STK (x, y), mm
    bgo_offset_mm: tuple[float, float] = (0.0, 0.0)
    #: BGO frame tilt (x, y): extra shift per mm of depth below the BGO top
    bgo_tilt_rad: tuple[float, float] = (0.0, 0.0)
    #: STK and PSD signal scale
    stk_signal_scale: float = Field(1.0, gt=0)
    #: BGO energy scale
    bgo_energy_scale: float = Field(1.0, gt=0)


class SimulationSource(_Strict):
    """Events simulated inside the pipeline, never written as ROOT files."""

    #: the source kind
    type: Literal["simulation"] = "simulation"
    #: per particle (proton, helium, electron): how many events, of which energies
    particles: dict[str, ParticleRecipe]
    #: base seed; each work unit derives its own from it, so a rebuild makes the same events
    seed: int = Field(0, ge=0)
    #: mc (with truth) or flight (no truth, flight-like conditions)
    mode: Literal["mc", "flight"] = "mc"
    #: events per work unit (one shard per split)
    events_per_unit: int = Field(2000, gt=0)
    #: mc only: a changed detector (default: the nominal one)
    detector: DetectorConditions | None = None

    @model_validator(mode="after")
    def _known_particles(self) -> SimulationSource:
        unknown = sorted(set(self.particles) - set(PDG))
        if unknown:
            raise ValueError(f"unknown particles {unknown}: use {sorted(PDG)}")
        for name, r in self.particles.items():
            if r.energy_max <= r.energy_min:
                raise ValueError(f"{name}: energy_max must exceed energy_min")
        if self.detector is not None and self.mode == "flight":
            raise ValueError("detector: flight-like runs draw their own conditions; set it for mc sources")
        return self


Source = Annotated[FileSource | SimulationSource, Field(discriminator="type")]


class Range(_Strict):
    """A half-open interval [min, max); null leaves that side open."""

    #: lowest value kept (inclusive); null: no lower bound
    min: float | None = None
    #: first value no longer kept (exclusive); null: no upper bound
    max: float | None = None

    def contains(self, value):

        ok = np.ones(np.shape(value), dtype=bool)
        if self.min is not None:
            ok &= value >= self.min
        if self.max is not None:
            ok &= value < self.max
        return ok


class Selection(_Strict):
    """Which events of the sources a dataset keeps."""

    deposit_gev: Range = Range()  # BGO deposited energy (available in flight data too)
    true_energy_gev: Range = Range()  # MC truth, for the paper's training ranges
    electron_fraction: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="keep electrons so that they make this share of the selected events "
        "(downsamples electrons or hadrons deterministically); None keeps all",
    )
    require_hough_hits: bool = False  # drop events with no STK hit in the RoI


class Roi(_Strict):
    """Where the Hough RoI is centred.

    `model`: on the track the registered chain has after stage `upstream`, computed as the chain
    computes it (`seed`: BGO networks by energy range and the seed rule, the coarse network's
    input; `coarse`: after the coarse step, the precise network's input; `final`: the chain's
    track). The models are those at `alias` when the build starts (a build may name another).
    """

    #: truth-smeared (the true track, blurred), axis-fit (the shower-axis fit) or model (the chain)
    source: Literal["truth-smeared", "axis-fit", "model"] = "truth-smeared"
    smear_mm: float = Field(2.0, ge=0.0, description="truth-smeared: Gaussian error per coordinate")
    #: model: the chain's stage whose track centres the RoI (seed, coarse or final)
    upstream: Literal["seed", "coarse", "final"] | None = None
    #: model: the registry alias of the upstream models
    alias: str = Field("production", pattern=f"^{ALIAS_RE}$")
    #: the Hough image: precise (50 um pixels, +-10 mm) or coarse (400 um, +-80 mm)
    geometry: Literal["precise", "coarse"] = "precise"
    zthr: float | None = Field(2**0.5, description="charge split threshold; null: no split")
    coarse_everywhere: bool | None = Field(
        None,
        description="model: the upstream chain runs its coarse step at every deposited energy "
        "(`--coarse-below inf`), not only below 1 TeV (the paper's switch)",
    )

    @model_validator(mode="after")
    def _model_needs_upstream(self) -> Roi:
        if self.coarse_everywhere is not None and self.source != "model":
            raise ValueError(
                "roi.coarse_everywhere is a setting of the upstream chain: only with source 'model'"
            )
        if (self.source == "model") != (self.upstream is not None):
            raise ValueError(
                "roi.upstream (seed, coarse or final: the chain's track it is centred on) is given "
                "exactly when roi.source is 'model'"
            )
        return self


class Split(_Strict):
    """Shares of the train, validation and test splits (an event's split: a hash of its identity)."""

    #: share of events for training
    train: float = 0.8
    #: share for validation (learning-rate schedule, early stopping)
    val: float = 0.1
    #: share held out for the test metrics
    test: float = 0.1

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        if abs(self.train + self.val + self.test - 1.0) > 1e-9 or min(self.train, self.val, self.test) < 0:
            raise ValueError(
                f"split fractions must be >= 0 and sum to 1, got {self.train}, {self.val}, {self.test}"
            )
        return self


class DatasetSpec(_Strict):
    #: the dataset's name (lower case, digits, `.`, `_`, `-`); its versions are told apart by hash
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    #: the network family it trains (the catalog checks that a network reads this kind)
    kind: Kind
    #: free text, shown by `dampeml dataset show`
    description: str = ""
    #: where the events come from: `type: files` (ROOT files) or `type: simulation` (made in the build)
    sources: list[Source] = Field(min_length=1)
    #: which events are kept
    selection: Selection = Selection()
    #: the stored inputs of the network
    features: list[Feature] = Field(min_length=1)
    #: the stored training targets
    targets: list[Target] = Field(min_length=1)
    #: the Hough region of interest (specs with hough_hits or hough_offsets)
    roi: Roi | None = None
    #: the train/val/test shares
    split: Split = Split()
    #: the build fails when more than this share of the input events is quarantined
    max_quarantine_fraction: float = Field(0.01, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        if ("hough_hits" in self.features or "hough_offsets" in self.targets) and self.roi is None:
            raise ValueError("hough_hits / hough_offsets need an `roi:` section")
        flight = [s for s in self.sources if isinstance(s, SimulationSource) and s.mode == "flight"]
        if flight and set(self.targets) - {"track"}:
            raise ValueError("flight-like sources carry no truth: only unsupervised use is possible")
        return self

    def spec_hash(self) -> str:
        """Content hash: same meaning, same hash (independent of YAML layout and comments)."""
        data = self.model_dump(mode="json")
        if data["roi"] and data["roi"]["coarse_everywhere"] is None:  # added later: unset, old hashes hold
            del data["roi"]["coarse_everywhere"]
        for source in data["sources"]:
            if source.get("type") == "simulation" and source["detector"] is None:  # added later, as above
                del source["detector"]
        canon = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]


def validation_problems(exc: ValidationError) -> str:
    """Every problem of a pydantic validation as 'field.path: message', joined."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()
    )


def read_yaml_mapping(path: Path, what: str, error: type[Exception], hint: str) -> dict:
    """The YAML mapping in `path`; `error`, naming the file and `hint`, if missing, invalid or no mapping."""
    if not path.exists():
        raise error(f"{path}: no such {what} ({hint})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise error(f"{path}: a {what} is a YAML mapping, got {type(raw).__name__}")
    return raw


def read_typed(path: Path, what: str, error: type[Exception], hint: str, validate: Callable[[dict], T]) -> T:
    """`validate` of the YAML mapping at `path`; `error` naming the file and each offending field."""
    raw = read_yaml_mapping(path, what, error, hint)
    try:
        return validate(raw)
    except ValidationError as exc:
        raise error(f"{path}: invalid {what}: {validation_problems(exc)}") from None


def load_spec(path: str | Path) -> DatasetSpec:
    """Load and validate a spec; errors name the file and each offending field."""
    hint = "the shipped ones are in datasets/"
    return read_typed(Path(path), "dataset spec", SpecError, hint, DatasetSpec.model_validate)
