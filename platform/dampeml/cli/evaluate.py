"""`dampeml evaluate`: the physics report of the registered chain on held-out MC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dampeml.cli.config_file import write_invocation
from dampeml.cli.errors import clean_errors, console
from dampeml.cli.options import ChainFile, CoarseBelowTeV, StandardFile, chain_settings

#: events read from the first file for the report's maps (of which each map shows four)
EXPLAINED_EVENTS = 200


@clean_errors
def evaluate(
    ctx: typer.Context,
    input: Annotated[str, typer.Option(help="MC event files: a path or a quoted glob ('mc/*.root')")],
    out: Annotated[Path, typer.Option(help="report folder (report.md, PNGs, metrics.json)")],
    alias: Annotated[str, typer.Option(help="registry alias of the chain's models")] = "production",
    runtime: Annotated[str, typer.Option(help="tensorflow or onnx")] = "tensorflow",
    max_events: Annotated[int | None, typer.Option(help="stop after this many events")] = None,
    batch_size: Annotated[int, typer.Option(help="events per chain call")] = 2000,
    coarse_below: CoarseBelowTeV = None,
    chain_file: ChainFile = None,
    standard_file: StandardFile = None,
    compare: Annotated[
        list[str] | None, typer.Option(help="also run the chain of the models at this alias (repeatable)")
    ] = None,
) -> None:
    """Run the CNN chain and the standard reconstruction on MC; write the physics report."""
    from dampeml.evaluation.explain import chain_explanations
    from dampeml.evaluation.report import collect, write_report
    from dampeml.io.datasource import expand_paths
    from dampeml.io.root_reader import inspect_file, read_events
    from dampeml.reconstruction.chain import Chain
    from dampeml.reconstruction.config import read_standard_config, standard_config_yaml
    from dampeml.reconstruction.standard import StandardConfig
    from dampeml.security import check_alias, check_job_paths

    check_alias(alias)
    for other in compare or []:
        check_alias(other, "--compare")
    check_job_paths(input=input, out=out)  # StorageNotAllowedError before any read
    files = expand_paths(input)
    config = chain_settings(chain_file, coarse_below)
    standard = read_standard_config(standard_file) if standard_file is not None else StandardConfig()
    chain = Chain.from_registry(alias=alias, flight=False, runtime=runtime, config=config)
    others = {
        a: Chain.from_registry(alias=a, flight=False, runtime=runtime, config=config) for a in compare or []
    }
    sample = collect(
        files, chain, batch_size=batch_size, max_events=max_events, others=others, standard=standard
    )
    out.mkdir(parents=True, exist_ok=True)
    first = read_events(files[0], 0, min(EXPLAINED_EVENTS, inspect_file(files[0]).n_events))
    path = write_report(sample, out, explanations=chain_explanations(chain, first, out))
    (out / "chain.yaml").write_text(config.to_yaml())
    (out / "standard.yaml").write_text(standard_config_yaml(standard))
    write_invocation(ctx, out)
    console.print(f"report of {sample.n_events} events: {path} (its chain settings: {out / 'chain.yaml'})")
