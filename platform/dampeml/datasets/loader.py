"""Feeding training: a dataset split as a Ray Data dataset of network-ready batches.

`network_dataset(uri, split)` reads the split's Parquet shards with Ray Data and maps
them to the inputs and targets of the dataset's network kind, rendering the sparse
features (Hough images, raw STK image) on the fly. From a Ray Train worker, pass the
result to the trainer and use `get_dataset_shard(...).to_tf("x", "y", ...)`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dampeml.datasets.columns import GEOMETRIES, TRACK
from dampeml.errors import InputError
from dampeml.features import RoiHits, render_hough, render_stk_image, to_float
from dampeml.features.tracks import cos_theta
from dampeml.storage import MANIFEST, Store

ELECTRON = 2  # particle label of electrons (dampeml.datasets.units.PARTICLES)


class DatasetError(InputError):
    """A dataset that is missing, incomplete, or of the wrong kind for its use."""


def load_manifest(uri: str) -> dict:
    store = Store.open(uri)
    if not store.exists(MANIFEST):
        raise DatasetError(f"{uri}: no dataset manifest here (build one with `dampeml dataset build`)")
    return store.read_json(MANIFEST)


def _column(table: pa.Table, name: str) -> pa.Array:
    if name not in table.column_names:
        raise DatasetError(f"dataset has no column {name!r}: was it built with the right spec?")
    col = table.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _fixed_binary(table: pa.Table, name: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = _column(table, name)
    width = arr.type.byte_width
    buf = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
    return buf[arr.offset * width : (arr.offset + len(arr)) * width].reshape((len(arr), *shape))


def _floats(table: pa.Table, names: list[str]) -> np.ndarray:
    return np.stack([_column(table, n).to_numpy(zero_copy_only=False) for n in names], axis=1).astype(
        np.float32
    )


def _lists(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    arr = _column(table, name)
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]]
    return values, np.diff(offsets)


def _bgo_inputs(t: pa.Table, spec: dict) -> dict:
    return {
        "x": to_float(_fixed_binary(t, "bgo_image", (14, 22)))[..., None],
        "y": _floats(t, [f"true_{n}" for n in TRACK]),
    }


def _hough_image(t: pa.Table, spec: dict) -> np.ndarray:
    layer, counts = _lists(t, "hough_layer")
    offset, _ = _lists(t, "hough_offset")
    signal, _ = _lists(t, "hough_signal")
    hits = RoiHits(counts, layer.astype(np.int8), offset.astype(np.float32), signal.astype(np.float32))
    roi = _floats(t, [f"roi_{n}" for n in TRACK])
    return render_hough(hits, cos_theta(roi), GEOMETRIES[spec["roi"]["geometry"]], spec["roi"]["zthr"])


def _hough_inputs(t: pa.Table, spec: dict) -> dict:
    return {"x": _hough_image(t, spec), "y": _floats(t, [f"hough_target_{n}" for n in TRACK])}


def _no_inelastic(t: pa.Table) -> np.ndarray:
    """Target of the inelastic networks: P(no inelastic interaction), as in the paper."""
    return (~_column(t, "true_inelastic").to_numpy(zero_copy_only=False)).astype(np.float32)[:, None]


def _inelastic_stk_inputs(t: pa.Table, spec: dict) -> dict:
    layer, counts = _lists(t, "stk_layer")
    half, _ = _lists(t, "stk_half")
    channel, _ = _lists(t, "stk_channel")
    signal, _ = _lists(t, "stk_signal")
    return {
        "x": render_stk_image(layer, half, channel, signal, counts=counts)[..., None],
        "y": _no_inelastic(t),
    }


def _inelastic_hough_inputs(t: pa.Table, spec: dict) -> dict:
    return {"x": _hough_image(t, spec), "y": _no_inelastic(t)}


def _shower_inputs(t: pa.Table) -> dict:
    """HAMF's two inputs: the BGO image and the shower variables."""
    variables = _column(t, "shower_variables")
    k = variables.type.list_size
    flat = variables.values.to_numpy()[variables.offset * k : (variables.offset + len(variables)) * k]
    return {
        "x_image": to_float(_fixed_binary(t, "bgo_image", (14, 22)))[..., None],
        "x_vars": flat.reshape(len(variables), k).astype(np.float32),
    }


def _electron_proton_inputs(t: pa.Table, spec: dict) -> dict:
    y = (_column(t, "particle").to_numpy() == ELECTRON).astype(np.float32)[:, None]
    return {**_shower_inputs(t), "y": y}


def energy_target(true_energy_gev: np.ndarray, deposit_gev: np.ndarray) -> np.ndarray:
    """The energy network's target: ln(true energy / BGO deposit), the event's own leakage correction
    (O(0.1-1): a few % for contained showers, more the more leaks out)."""
    return np.log(np.asarray(true_energy_gev, np.float64) / np.asarray(deposit_gev, np.float64)).astype(
        np.float32
    )


def _energy_inputs(t: pa.Table, spec: dict) -> dict:
    truth, deposit = (_column(t, c).to_numpy(zero_copy_only=False) for c in ("true_energy", "deposit_gev"))
    return {**_shower_inputs(t), "y": energy_target(truth, deposit)[:, None]}


INPUTS: dict[str, Callable[[pa.Table, dict], dict]] = {
    "bgo-direction": _bgo_inputs,
    "stk-hough": _hough_inputs,
    "inelastic-raw-stk": _inelastic_stk_inputs,
    "inelastic-hough": _inelastic_hough_inputs,
    "electron-proton": _electron_proton_inputs,
    "bgo-energy": _energy_inputs,
}


#: stored columns each kind's target is made of: without MC truth the build writes none of them
TARGET_COLUMNS: dict[str, tuple[str, ...]] = {
    "bgo-direction": tuple(f"true_{n}" for n in TRACK),
    "stk-hough": tuple(f"hough_target_{n}" for n in TRACK),
    "inelastic-raw-stk": ("true_inelastic",),
    "inelastic-hough": ("true_inelastic",),
    "electron-proton": ("particle",),
    "bgo-energy": ("true_energy",),
}


def check_targets(uri: str, manifest: dict, split: str) -> None:
    """DatasetError unless every stored row of `split` has its network's target: a dataset built
    from files without MC truth (flight data) would otherwise train on absent or -1 targets."""

    store = Store.open(uri)
    shards = store.list(split, ".parquet")
    kind = manifest["kind"]
    rebuild = "rebuild it from MC files (`dampeml dataset build`), flight data carries no truth"
    for name in shards[:1]:  # every shard of a dataset has one schema
        columns = pq.read_schema(store.path(split, name), filesystem=store.fs).names
        missing = [c for c in TARGET_COLUMNS.get(kind, ()) if c not in columns]
        if missing:
            raise DatasetError(
                f"{uri}: the {split} split has no target {', '.join(missing)} for a {kind!r} network: "
                f"{rebuild}"
            )
    unknown = manifest.get("particles", {}).get(split, {}).get("unknown", 0)
    if kind == "electron-proton" and unknown:
        raise DatasetError(
            f"{uri}: {unknown} events of the {split} split have no particle label, the target of "
            f"{kind!r} networks: {rebuild}"
        )


def check_split(uri: str, manifest: dict, split: str) -> None:
    """DatasetError unless `split` has events, each with its network's target."""
    if not manifest["splits"].get(split, {}).get("events"):
        raise DatasetError(f"{uri}: split {split!r} is empty")
    check_targets(uri, manifest, split)


def network_batch(table: pa.Table, manifest: dict) -> dict[str, np.ndarray]:
    """A batch of stored rows -> the network's numpy inputs ('x' or 'x_*') and target 'y'."""
    return INPUTS[manifest["kind"]](table, manifest["spec"])


def stored_batches(uri: str, split: str, rows: int = 1024):
    """The split's stored rows, in stored order, `rows` at a time, read in this process.

    For a reader in the driver (test-split predictions, a batch's shape): a Ray Data read there
    costs several seconds on a small cluster (worker processes that start and import the
    renderers after a training run) for a few hundred rows; the training feed stays on Ray Data.
    """
    store = Store.open(uri)
    for name in store.list(split, ".parquet"):
        with store.fs.open_input_file(store.path(split, name)) as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=rows):
                yield pa.Table.from_batches([batch])


def batch_signature(uri: str, split: str = "train") -> dict[str, tuple[tuple[int, ...], str]]:
    """{array name: (shape of one row, dtype)} of the split's network batches, from two stored rows."""
    manifest = load_manifest(uri)
    table = next(stored_batches(uri, split, rows=2))
    return {k: (tuple(a.shape[1:]), a.dtype.name) for k, a in network_batch(table, manifest).items()}


def network_dataset(
    uri: str,
    split: str = "train",
    expected_kind: str | None = None,
    cache: bool = False,
    shuffle: bool = False,
    seed: int | None = None,
    render: bool = True,
):
    """The split as a Ray Data dataset of network batches (rendered lazily, per block); with
    `render=False`, of the stored rows, for a consumer that renders them itself (:func:`network_batch`).

    `cache=True` keeps the stored (compact) rows in Ray's object store after the first
    read, so later epochs only re-render; for splits that fit the cluster's memory.
    `shuffle=True` shuffles the stored rows anew on every pass (every training epoch),
    before rendering, where rows are small. Training needs it: the build writes one
    particle's events per unit, so in stored order a batch (and the first steps of an
    epoch) would hold one particle only. `seed` fixes the sequence of those orders (pass k of
    every run with the same seed draws the same permutation); None draws new ones every run.
    """
    import ray

    manifest = load_manifest(uri)
    if expected_kind is not None and manifest["kind"] != expected_kind:
        raise DatasetError(f"{uri} is a {manifest['kind']!r} dataset, this needs {expected_kind!r}")
    check_split(uri, manifest, split)
    store = Store.open(uri)
    # Ray 2.60's default (V2) Parquet source starts and kills 32 footer-reader actors on every
    # read: ~4-5 s per epoch and split on a small cluster. The V1 source reads the same files
    # 7-13x faster here (benchmarks/README.md); the setting is read when the plan is built.
    ctx = ray.data.DataContext.get_current()
    previous, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
    try:
        ds = ray.data.read_parquet(store.path(split), filesystem=store.fs)
    finally:
        ctx.use_datasource_v2 = previous
    if cache:
        ds = ds.materialize()
    if shuffle:
        order = None if seed is None else ray.data.RandomSeedConfig(seed=seed, reseed_after_execution=True)
        ds = ds.random_shuffle(seed=order)
    return ds.map_batches(network_batch, batch_format="pyarrow", fn_args=(manifest,)) if render else ds
