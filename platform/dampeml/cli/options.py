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
