"""`dampeml tune CAMPAIGN.yaml`: an ablation campaign with Ray Tune (each trial a Ray Train run)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dampeml.cli.config_file import write_invocation
from dampeml.cli.errors import clean_errors, console
from dampeml.cli.options import Address, NumCpus


@clean_errors
def tune(
    ctx: typer.Context,
    campaign: Annotated[Path, typer.Argument(help="campaign file (the shipped ones are in campaigns/)")],
    workdir: Annotated[
        Path, typer.Option(help="datasets cache, Tune and Train storage, comparison (shared on a cluster)")
    ] = Path("dampeml-campaigns"),
    resume: Annotated[bool, typer.Option(help="continue an interrupted campaign in --workdir")] = False,
    address: Address = None,
    num_cpus: NumCpus = None,
) -> None:
    """Run an ablation campaign; log it to MLflow (one parent run, a child per trial) and compare."""
    from dampeml.tuning.campaign import load_campaign
    from dampeml.tuning.report import rich_table
    from dampeml.tuning.run import run_campaign

    c = load_campaign(campaign)  # every check that needs no Ray
    result = run_campaign(
        c,
        workdir,
        resume=resume,
        log=lambda s: console.print(s, markup=False, highlight=False),
        ray_address=address,
        num_cpus=num_cpus,
    )
    write_invocation(ctx, workdir)
    console.print(rich_table(c, result.groups))
    console.print(f"comparison: {', '.join(str(p) for p in result.artifacts)}")
    console.print(f"MLflow parent run {result.parent_run_id} (experiment dampeml-campaigns)")
    if result.n_failed:
        console.print(
            f"[bold red]{result.n_failed} trial(s) failed[/]: `dampeml tune {campaign} --resume` retries them"
        )
        raise typer.Exit(1)
