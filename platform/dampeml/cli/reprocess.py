"""`dampeml reprocess`: the reconstruction chain over event files, with Ray Data, into Parquet."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from dampeml.cli.config_file import write_invocation
from dampeml.cli.errors import clean_errors, console
from dampeml.cli.options import Address, ChainFile, CoarseBelowTeV, NumCpus, chain_settings


@clean_errors
def reprocess(
    ctx: typer.Context,
    input_glob: Annotated[
        str, typer.Option("--input", help="event files: a path or a quoted glob ('runs/*.root')")
    ],
    out: Annotated[str, typer.Option(help="output directory or pyarrow URI (s3://..., gs://...)")],
    alias: Annotated[str, typer.Option(help="registry alias of every network of the chain")] = "production",
    runtime: Annotated[str, typer.Option(help="tensorflow or onnx")] = "tensorflow",
    actors: Annotated[int, typer.Option(help="chain actors (each loads the models once)")] = 1,
    gpus_per_actor: Annotated[float, typer.Option(help="GPUs per actor (0: CPU)")] = 0.0,
    cpus_per_actor: Annotated[float, typer.Option(help="CPUs per actor")] = 1.0,
    batch_size: Annotated[int, typer.Option(help="events per chain call")] = 512,
    events_per_block: Annotated[
        int, typer.Option(help="events per read task (a file is split in ranges)")
    ] = 2000,
    overwrite: Annotated[
        bool, typer.Option(help="replace outputs in --out made with other model versions or chain settings")
    ] = False,
    coarse_below: CoarseBelowTeV = None,
    chain_file: ChainFile = None,
    address: Address = None,
    num_cpus: NumCpus = None,
) -> None:
    """Reconstruct events with the registered chain; one Parquet file per input file, every event
    accounted for (written or quarantined). A rerun with the same arguments finishes a killed job."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dampeml.cli.checks import check_output_folder
    from dampeml.inference.predictor import ReprocessError
    from dampeml.inference.reprocess import ReprocessConfig
    from dampeml.inference.reprocess import reprocess as run
    from dampeml.runtime import init_ray, local_cpus
    from dampeml.security import check_alias

    check_alias(alias)  # else the registry's "no alias" message suggests promoting to it
    cfg = ReprocessConfig(
        inputs=input_glob,
        out=out,
        alias=alias,
        runtime=runtime,  # type: ignore[arg-type]
        actors=actors,
        gpus_per_actor=gpus_per_actor,
        cpus_per_actor=cpus_per_actor,
        batch_size=batch_size,
        events_per_block=events_per_block,
        overwrite=overwrite,
        chain=chain_settings(chain_file, coarse_below),
    )
    cfg.check()  # before starting Ray
    check_output_folder(out, "--out")  # a file there, or no write permission: said now, not mid-job
    if num_cpus is None and not (address or os.environ.get("RAY_ADDRESS")):  # a local Ray: room for the pool
        num_cpus = local_cpus(actors * cpus_per_actor + 1)  # + the read tasks
    init_ray(address=address, num_cpus=num_cpus)
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = False  # ours below, per committed file
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[events]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("files", total=None, events="")

        def show(p) -> None:
            progress.update(
                task,
                completed=p.files_done,
                total=p.files_total,
                events=f"{p.events_done}/{p.events_total} events committed ({p.events_seen} run now)",
            )

        try:
            result = run(cfg, progress=show)
        except ReprocessError:
            progress.stop()
            raise  # clean_errors prints it on one line (never silenced by --quiet) and exits 1
    write_invocation(ctx, out)
    print_summary(result.summary)
    if result.files_done_before:
        console.print(
            f"resumed: {result.files_done_before} of {result.files_done_before + result.files_processed} "
            "files were already done"
        )


def print_summary(summary: dict) -> None:
    """Per-file table and totals of a reprocessing summary."""
    t = Table(
        title=f"reprocessed with @{summary['alias']} ({summary['runtime']}, coarse Hough step below "
        f"{summary.get('coarse_below_tev', '1')} TeV deposited) into {summary['out']}"
    )
    for col in ("input", "mode", "events", "written", "quarantined", "status"):
        t.add_column(col, justify="left" if col in ("input", "status", "mode") else "right")
    for f in summary["files"]:
        q = sum(f.get("quarantined", {}).values())
        status = f["status"] if f["status"] == "done" else f"[red]{f['status']}[/]: {f.get('reason', '')}"
        t.add_row(
            f["input"].rsplit("/", 1)[-1],
            f.get("mode", "?"),
            str(f.get("events", "?")),
            str(f.get("written", 0)),
            str(q),
            status,
        )
    console.print(t)
    tot = summary["totals"]
    console.print(
        f"events {tot['events']}: written {tot['written']}, quarantined {tot['quarantined']}"
        + (f" {summary['quarantined_by_reason']}" if summary["quarantined_by_reason"] else "")
        + (
            f"; unreadable files {tot['unreadable_files']} (see quarantine.jsonl)"
            if tot["unreadable_files"]
            else ""
        )
    )
    run = summary["run"]
    if run["events_processed"]:
        console.print(
            f"{run['events_processed']} events in {run['pipeline_seconds']:.1f} s "
            f"({run['events_per_second']:.1f} events/s with the actors' start, {run['actors']} actors)"
        )
    if scan := run.get("duplicate_scan"):
        console.print(
            f"duplicate check: {scan['events']} identities in {scan['seconds']:.2f} s, "
            f"{scan['duplicates']} repeats"
        )
    versions = "; ".join(
        f"{mode}: " + ", ".join(f"{k} v{v}" for k, v in sorted(vs.items()))
        for mode, vs in summary["versions"].items()
    )
    console.print(f"models: {versions}")
