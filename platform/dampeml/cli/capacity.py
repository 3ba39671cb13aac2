"""`dampeml capacity`: what a request needs on a cluster shape, from the measured per-event costs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dampeml.cli.errors import clean_errors, console
from dampeml.pipeline.capacity import Shape, capacity_plan, format_plan, training_costs


@clean_errors
def capacity(
    produce: Annotated[float, typer.Option(help="events to simulate (production)")] = 0.0,
    build: Annotated[float, typer.Option(help="events to build into datasets (of --build-kind)")] = 0.0,
    build_kind: Annotated[
        str, typer.Option(help="the datasets' kind: bgo-direction or stk-hough (measured rates)")
    ] = "bgo-direction",
    reprocess: Annotated[float, typer.Option(help="events to reprocess with the chain")] = 0.0,
    preset: Annotated[str, typer.Option(help="the chain's networks: small or full")] = "small",
    recipe: Annotated[Path | None, typer.Option(help="also the training of this recipe's steps")] = None,
    profile: Annotated[str, typer.Option(help="the recipe's profile")] = "paper",
    cpu_nodes: Annotated[int, typer.Option(help="CPU nodes")] = 1,
    cores_per_node: Annotated[int, typer.Option(help="cores of a CPU node")] = 2,
    gpu_nodes: Annotated[int, typer.Option(help="GPU nodes")] = 0,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs of a GPU node")] = 1,
    cores_per_gpu_node: Annotated[int, typer.Option(help="cores of a GPU node")] = 16,
) -> None:
    """Print the core- and GPU-hours, wall time and storage of a request on a cluster shape."""
    shape = Shape(cpu_nodes, cores_per_node, gpu_nodes, gpus_per_node, cores_per_gpu_node)
    rows = capacity_plan(shape, produce=produce, build=build, reprocess=reprocess, preset=preset,
                         build_kind=build_kind)  # fmt: skip
    if recipe is not None:
        from dampeml.pipeline.recipe import load_recipe

        rows += training_costs(load_recipe(recipe, profile))
    if not rows:
        raise typer.BadParameter("name at least one of --produce, --build, --reprocess, --recipe")
    for line in format_plan(rows, shape):
        console.print(line, highlight=False, soft_wrap=True)
