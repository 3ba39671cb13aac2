"""`dampeml pipeline run RECIPE --profile NAME`: train a recipe's chain of networks, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dampeml.cli.errors import clean_errors, console
from dampeml.cli.options import Address, NumCpus

app = typer.Typer(help="Training recipes: a chain of networks trained, registered and promoted in order.")


@app.callback()
@clean_errors
def _group(ctx: typer.Context) -> None:
    """Training recipes: a chain of networks trained, registered and promoted in order."""
    from dampeml.cli.config_file import apply_config

    apply_config(ctx)  # `dampeml --config FILE` reaches the command through its group


@app.command("run")
@clean_errors
def run(
    recipe: Annotated[Path, typer.Argument(help="recipe file (the shipped one is recipes/chain.yaml)")],
    profile: Annotated[str, typer.Option(help="the recipe's profile: its sizes and alias")] = "demo",
    workdir: Annotated[
        Path, typer.Option(help="datasets, Ray Train storage and step records (shared on a cluster)")
    ] = Path("dampeml-work"),
    dry_run: Annotated[bool, typer.Option(help="print the plan and check the recipe; run nothing")] = False,
    address: Address = None,
    num_cpus: NumCpus = None,
) -> None:
    """Run every step not already done with the same inputs; a rerun skips finished steps."""
    from dampeml.pipeline.recipe import load_recipe
    from dampeml.pipeline.runner import plan_lines, run_pipeline
    from dampeml.runtime import init_ray, local_cpus
    from dampeml.security import check_storage

    resolved = load_recipe(recipe, profile)  # every check that needs no Ray
    check_storage(workdir, what="--workdir")
    for line in plan_lines(resolved):
        console.print(line, markup=False, highlight=False)
    if dry_run:
        return
    need = max(s.train.workers * s.train.cpus_per_worker + 1 for s in resolved.steps.values())  # + the feed
    init_ray(address=address, num_cpus=num_cpus or local_cpus(need))
    results = run_pipeline(resolved, workdir, log=lambda s: console.print(s, markup=False, highlight=False))
    trained = sum(r.status == "trained" for r in results.values())
    console.print(
        f"[bold green]pipeline {resolved.name}/{resolved.profile} done[/]: {trained} trained, "
        f"{len(results) - trained} reused; promoted models are @{resolved.alias}"
    )
