"""`dampeml dataset build|show`: versioned training datasets from specs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dampeml.cli.errors import clean_errors, console
from dampeml.cli.options import Address, NumCpus

app = typer.Typer(
    help="Build and inspect versioned training datasets (YAML specs in datasets/).", no_args_is_help=True
)


@app.callback()
@clean_errors
def _group(ctx: typer.Context) -> None:
    """Datasets: build a versioned Parquet dataset from a spec, show one."""
    from dampeml.cli.config_file import apply_config

    apply_config(ctx)  # `dampeml --config FILE` reaches the command through its group


@app.command()
@clean_errors
def build(
    spec: Annotated[Path, typer.Argument(help="dataset spec, e.g. datasets/bgo-direction-low-small.yaml")],
    out: Annotated[str, typer.Option(help="output directory or pyarrow URI (s3://..., gs://...)")],
    limit_events: Annotated[
        int | None, typer.Option(help="build from at most this many input events")
    ] = None,
    resume: Annotated[bool, typer.Option(help="finish an interrupted build at --out")] = False,
    address: Address = None,
    num_cpus: NumCpus = None,
) -> None:
    """Run the Ray Data pipeline of a spec and write Parquet shards plus a manifest."""
    from rich.progress import Progress

    from dampeml.cli.checks import check_output_folder
    from dampeml.datasets.build import build_dataset
    from dampeml.datasets.spec import load_spec
    from dampeml.security import check_storage

    spec_obj = load_spec(spec)
    check_storage(out, what="--out")  # before anything is made there
    check_output_folder(out, "--out")
    with Progress(console=console) as progress:
        task = progress.add_task(f"building {spec_obj.name}", total=None)
        summary = build_dataset(
            spec_obj,
            out,
            limit_events=limit_events,
            resume=resume,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
            spec_path=spec,
            ray_address=address,
            num_cpus=num_cpus,
        )
    print_summary(summary.manifest, out)
    if summary.units_done_before:
        console.print(
            f"resumed: {summary.units_done_before} of {summary.units_total} units were already done"
        )


def print_summary(manifest: dict, uri: str) -> None:
    acc = manifest["accounting"]
    t = Table(title=f"{manifest['dataset_version']} at {uri}")
    for col in ("split", "events", "shards", "MB"):
        t.add_column(col, justify="right")
    for s, v in manifest["splits"].items():
        t.add_row(s, str(v["events"]), str(v["shards"]), f"{v['bytes'] / 1e6:.2f}")
    console.print(t)
    console.print(
        f"read {acc['read']}, written {acc['written']}, filtered {sum(acc['filtered'].values())} "
        f"{acc['filtered'] or ''}, quarantined {sum(acc['quarantined'].values())} "
        f"{acc['quarantined'] or ''}"
        + (f", unreadable files {acc['unreadable_files']}" if acc["unreadable_files"] else "")
    )
    bpe = manifest["bytes_per_event"]
    console.print(f"{bpe:.0f} bytes/event on disk" if bpe else "no events written")
    if scan := manifest.get("duplicate_scan"):
        console.print(
            f"duplicate check: {scan['events']} identities in {scan['seconds']:.2f} s, "
            f"{scan['duplicates']} repeats"
        )


@app.command()
@clean_errors
def show(
    uri: Annotated[str, typer.Argument(help="dataset directory or URI")],
    picture: Annotated[
        Path | None, typer.Option(help="PNG of sample inputs (default: <uri>/samples.png)")
    ] = None,
    samples: Annotated[int, typer.Option(help="events in the picture")] = 6,
) -> None:
    """Print the manifest and save a picture of sample inputs."""
    import json

    from dampeml.cli.checks import check_output_file
    from dampeml.datasets.loader import load_manifest
    from dampeml.datasets.samples import sample_picture
    from dampeml.security import check_storage

    check_storage(uri, what="dataset")
    if picture is None:  # sample_picture's default, named here to be checked like --picture
        local = "://" not in uri or uri.startswith("file://")
        picture = Path(uri.removeprefix("file://")) / "samples.png" if local else Path("samples.png")
        what = f"the sample picture {picture} (--picture's default)"
    else:
        what = "--picture"
    check_storage(picture, what=what)
    check_output_file(picture, what, overwrite=True)
    manifest = load_manifest(uri)
    console.print_json(json.dumps({k: v for k, v in manifest.items() if k not in ("spec", "schema")}))
    print_summary(manifest, uri)
    path = sample_picture(uri, manifest, picture, samples)
    console.print(f"sample inputs: {path}")
