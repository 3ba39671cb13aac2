"""CLI options shared by several commands (one help text, one default)."""

from __future__ import annotations

from typing import Annotated

import typer

CoarseBelowTeV = Annotated[
    float,
    typer.Option(
        help="deposited BGO energy (TeV) below which the chain runs its coarse Hough step. The paper's 1 "
        "assumes BGO networks as precise as its own; inf runs the step for every event, better for "
        "less precise ones (benchmarks/README.md, the full CNN chain)",
        min=0.0,
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
