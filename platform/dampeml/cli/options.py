"""CLI options shared by several commands (one help text, one default)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from dampeml.reconstruction.config import ChainConfig

CoarseBelowTeV = Annotated[
    float | None,
    typer.Option(
        help="deposited BGO energy (TeV) below which the chain runs its coarse Hough step (default: the "
        "--chain file's, else 1). The paper's 1 assumes BGO networks as precise as its own; inf runs the "
        "step for every event, better for less precise ones (benchmarks/README.md, the full CNN chain)",
        min=0.0,
    ),
]
#: the chain's settings file (dampeml.reconstruction.config)
ChainFile = Annotated[
    Path | None,
    typer.Option(
        "--chain",
        help="a YAML file of the chain's settings, only those it changes (docs/config-reference.md); "
        "--coarse-below wins over it",
    ),
]

#: the standard reconstruction's settings file (dampeml.reconstruction.standard.StandardConfig)
StandardFile = Annotated[
    Path | None,
    typer.Option(
        "--standard",
        help="a YAML file of the standard reconstruction's settings and quality criteria, only those it "
        "changes (docs/config-reference.md)",
    ),
]

#: where Ray runs: the cluster of the address, or of RAY_ADDRESS (a submitted job), else a local Ray
Address = Annotated[
    str | None, typer.Option(help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
]
#: a local Ray's logical CPUs (dampeml.runtime.local_cpus makes the default)
NumCpus = Annotated[
    int | None,
    typer.Option(
        help="logical CPUs of a local Ray (default: all cores, at least 4, and what the job needs + 2)", min=1
    ),
]


def chain_settings(file: Path | None, coarse_below_tev: float | None) -> ChainConfig:
    """The chain's settings of `--chain FILE` (else the defaults), with `--coarse-below` applied."""
    from dampeml.reconstruction.config import ChainConfig, read_chain_config  # numba: 0.6 s on every --help

    config = read_chain_config(file) if file is not None else ChainConfig()
    return config.with_coarse_below_tev(coarse_below_tev)
