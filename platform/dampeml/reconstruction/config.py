"""The chain's settings (`ChainConfig`): every constant of the reconstruction chain, typed, with
its source, readable from a YAML file (`--chain FILE.yaml` of `dampeml evaluate` and `reprocess`).

A file names only the settings it changes; an unknown or mistyped field is refused with its name.
The resolved settings are written beside the outputs (the report's and the reprocessing job's
`chain.yaml`), and a reprocessing job refuses to resume with other settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ConfigDict, TypeAdapter

from dampeml.datasets.spec import read_typed
from dampeml.errors import InputError
from dampeml.features import COARSE, PRECISE, ZTHR, HoughGeometry
from dampeml.reconstruction.hits import ASSIGN_WINDOW_MM, REFIT_OUTLIER_MM, REFIT_WINDOW_MM
from dampeml.reconstruction.standard import StandardConfig


class ChainConfigError(InputError):
    """A chain settings file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ChainConfig:
    """Every constant of the chain, with where it comes from (Tykhonov et al. 2023 = 'paper').

    Energies are deposited BGO energies in MeV (the sum of `bgo_energy`), what flight data has.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")  # a mistyped field in a file is an error

    #: paper sec. 4: the low/mid BGO models switch at 300 GeV deposited.
    low_mid_switch_mev: float = 300e3
    #: paper sec. 4: the mid/high BGO models switch at 20 TeV deposited.
    mid_high_switch_mev: float = 20e6
    #: paper sec. 5, footnote 15: the coarse Hough step runs below ~1 TeV deposited. Above, the
    #: precise step (+-10 mm) starts from the BGO network's track, which assumes a network as
    #: precise as the paper's; np.inf runs the coarse step for every event (benchmarks/README.md).
    coarse_below_mev: float = 1e6
    #: ours (the paper is silent): events whose shower starts at this BGO layer (0 = top) or
    #: deeper, or shows no shower, take the shower-axis fit as the seed; None: always the
    #: network. 11 (the last three layers) minimised the seeds outside the coarse window at
    #: 56 TeV-1 PeV among 9-12 (benchmarks/README.md, "The seed of late showers").
    axis_seed_from_layer: int | None = 11
    #: ours: the precise step runs this many times, each around the previous pass's track (the
    #: paper: once). A second pass gained 1-3 points at 56-100 TeV and 5-7 at PeV, a third
    #: nothing (benchmarks/README.md, "Two precise passes").
    precise_passes: int = 2
    #: ours: refit the final track to the hit nearest it within this distance per layer
    #: (reconstruction.hits.refit_track); None: the networks' track as it is (the paper).
    refit_window_mm: float | None = REFIT_WINDOW_MM
    #: ours: the refit leaves out up to two hits per projection further than this from the line
    #: through the others (3x the STK resolution; a backsplash cluster beside the primary's);
    #: None: every hit. +1.8 points for helium at 56-100 TeV (benchmarks/README.md).
    refit_outlier_mm: float | None = REFIT_OUTLIER_MM
    #: paper sec. 5: coarse 400 um pixels +-80 mm, precise 50 um +-10 mm (features.hough).
    coarse: HoughGeometry = COARSE
    #: the precise step's image (50 um pixels, +-10 mm); geometries must be those the networks learned on.
    precise: HoughGeometry = PRECISE
    #: paper sec. 6: the inelastic Hough network reads a 400 um image; datasets/inelastic-hough.yaml
    #: centres it on the precise network's track (roi.geometry: coarse).
    inelastic: HoughGeometry = COARSE
    #: paper sec. 5: charge split of the Hough channels at Zthr = sqrt(2) (dataset specs' roi.zthr).
    zthr: float | None = ZTHR
    #: paper sec. 2: one hit per layer within 0.3 mm of the track.
    assign_window_mm: float = ASSIGN_WINDOW_MM
    #: events per network call (every call has exactly this many rows, the last padded, so that an
    #: event's outputs do not depend on its batch); Hough images are rendered per chunk too (640 kB
    #: each, and a full-preset first convolution holds ~10 MB of activations per event).
    hough_chunk: int = 64
    #: ours: run input-pooled Hough networks as twins fed the 8-bit image pooled outside the
    #: network (same outputs, less CPU); False runs the models' graphs as they are.
    pooled_inputs: bool = True
    #: events per call of the raw-STK inelastic network
    raw_stk_chunk: int = 128
    #: events per call of the BGO and electron networks (padded as hough_chunk; a call is made per
    #: energy range, so a chunk much larger than a range's share of a batch is mostly padding)
    chunk: int = 128

    def __post_init__(self) -> None:
        if not self.coarse_below_mev >= 0:
            raise InputError(f"coarse_below_mev must be >= 0 (inf: every event), got {self.coarse_below_mev}")
        if self.refit_outlier_mm is not None and not self.refit_outlier_mm > 0:
            raise InputError(
                f"refit_outlier_mm must be > 0 (null: keep every hit), got {self.refit_outlier_mm}"
            )
        if self.precise_passes < 1:
            raise InputError(
                f"precise_passes must be >= 1 (the precise step makes the track), got {self.precise_passes}"
            )

    def with_coarse_below_tev(self, tev: float | None) -> ChainConfig:
        """This chain with its coarse step below `tev` TeV deposited (the CLIs' --coarse-below);
        None keeps it."""
        return self if tev is None else replace(self, coarse_below_mev=tev * 1e6)

    @property
    def coarse_below_tev(self) -> float:
        return self.coarse_below_mev / 1e6

    def as_dict(self) -> dict[str, Any]:
        """Every setting, nested geometries as mappings: what `read_chain_config` reads back."""
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.as_dict(), sort_keys=False)

    def differences(self, other: ChainConfig) -> list[str]:
        """`field old (now new)` for each setting that differs from `other` (the older one)."""
        mine, theirs = self.as_dict(), other.as_dict()
        return [f"{k} {theirs[k]} (now {mine[k]})" for k in mine if mine[k] != theirs[k]]


_ADAPTER = TypeAdapter(ChainConfig)


def read_chain_config(path: str | Path) -> ChainConfig:
    """The chain settings of a YAML file: the defaults, with the fields the file names."""
    hint = "see docs/config-reference.md"
    return read_typed(Path(path), "chain settings file", ChainConfigError, hint, _ADAPTER.validate_python)


def chain_config_from_dict(raw: dict[str, Any]) -> ChainConfig:
    """The settings recorded by `ChainConfig.as_dict` (a job's or a zoo's record)."""
    return _ADAPTER.validate_python(raw)


_STANDARD_ADAPTER = TypeAdapter(StandardConfig)


def read_standard_config(path: str | Path) -> StandardConfig:
    """The standard reconstruction's settings of a YAML file: the defaults, with the fields it names."""
    hint = "see docs/config-reference.md"
    what = "standard reconstruction file"
    return read_typed(Path(path), what, ChainConfigError, hint, _STANDARD_ADAPTER.validate_python)


def standard_config_yaml(config: StandardConfig) -> str:
    """The resolved settings, as written beside a report (`standard.yaml`)."""
    return yaml.safe_dump(_STANDARD_ADAPTER.dump_python(config, mode="json"), sort_keys=False)
