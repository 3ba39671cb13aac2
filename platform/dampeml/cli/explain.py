"""`dampeml explain`: where a network looks, as maps drawn over its inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dampeml.cli.errors import clean_errors, console

ZOO_PREFIX = "zoo:"


def _load(model: str):
    """(model, network name) of `models:/NAME@ALIAS`, `models:/NAME/VERSION` or `zoo:NAME` (the
    reference zoo shipped with the package), loaded as data either way."""
    from dampeml.evaluation.explain import network_of

    if model.startswith(ZOO_PREFIX):
        from dampeml.paths import ZOO
        from dampeml.registry.zoo import load_zoo_model

        name = model.removeprefix(ZOO_PREFIX)
        return load_zoo_model(ZOO / "reference", name), network_of(name)
    from dampeml.registry.models import check_model_uri, load_model

    name, _ = check_model_uri(model)  # RegistryError naming what exists
    return load_model(model), network_of(name)


@clean_errors
def explain(
    model: Annotated[str, typer.Argument(help="models:/NAME@ALIAS, models:/NAME/VERSION, or zoo:NAME")],
    out: Annotated[Path, typer.Option(help="folder for explain-<network>.png and its maps (.npz)")],
    events: Annotated[
        str | None, typer.Option(help="a ROOT event file (BGO direction and electron/proton networks)")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="a dataset of the network's kind (any network)")] = None,
    split: Annotated[str, typer.Option(help="the dataset's split")] = "test",
    n: Annotated[int, typer.Option(help="events to draw (the first ones)", min=1, max=64)] = 6,
    method: Annotated[str, typer.Option(help="layer-cam or grad-cam")] = "layer-cam",
    layer: Annotated[
        str | None, typer.Option(help="convolution layer of the gradient map (default: the last wide one)")
    ] = None,
    channel: Annotated[int, typer.Option(help="input channel drawn under the maps", min=0)] = 0,
) -> None:
    """Draw where a network looks on a few events: a gradient map (LayerCAM or Grad-CAM) and, for a
    network with attention modules, its spatial attention maps, each over the input image."""
    import numpy as np

    from dampeml.evaluation.explain import dataset_inputs, draw, event_inputs, explain_maps
    from dampeml.security import check_job_paths

    if (events is None) == (dataset is None):
        raise typer.BadParameter("give --events FILE or --dataset URI (one of them)")
    check_job_paths(out=out, events=events, dataset=dataset)
    net, network = _load(model)
    if events is not None:
        from dampeml.io.root_reader import read_events

        data = read_events(events, 0, n)
        inputs = event_inputs(network, data)
        titles = [f"run {r} event {e}" for r, e in zip(data["run_id"], data["event_id"], strict=True)]
    else:
        inputs, _ = dataset_inputs(network, dataset, split, n)
        titles = None
    result = explain_maps(net, inputs, layer, method)
    if result.images.shape[-1] <= channel:
        raise typer.BadParameter(f"--channel {channel}: the input has {result.images.shape[-1]} channels")
    out.mkdir(parents=True, exist_ok=True)
    png = draw(result, out / f"explain-{network}.png", titles, channel)
    np.savez_compressed(
        out / f"explain-{network}.npz", gradient=result.gradient, outputs=result.outputs, **result.attention
    )
    console.print(f"{network}: {len(result.images)} events, {result.method}: {png}")
