"""Event samples for the flux measurement, from event files (the shower variables computed here) or
from reprocessing outputs (the chain's columns, read with Ray Data), and how an MC file was generated.

MC truth is never in a reprocessing output (the chain reads no truth): for MC outputs, the true
energy is read from each row's source event file (`source_file`, `entry`), and so is the generation.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import pyarrow as pa

from dampeml.features.shower_axis import fit_shower_axis
from dampeml.io.root_reader import inspect_file, read_events
from dampeml.physics.flux import FluxError
from dampeml.physics.measure import EventSample, Generation
from dampeml.reconstruction.chain import AXIS_COLUMNS, ZETA, shower_input
from dampeml.storage import Store

#: scores the flux can cut on: name -> (the chain's output column, transform to "higher is more electron")
SCORES = ("electron_score", "zeta")


def score_from(name: str, values: np.ndarray) -> np.ndarray:
    """The classifier output `name` as a score that grows with electron-likeness."""
    v = np.asarray(values, dtype=np.float64)
    if name == "electron_score":
        return v
    if name == "zeta":  # DAMPE's classical variable: small for electrons
        return -np.log10(np.maximum(v, 1e-6))
    raise FluxError(f"unknown score {name!r}: use one of {list(SCORES)}")


def sample_from_events(events: dict, score: str = "zeta") -> EventSample:
    """A sample from events as read: the standard axis fit, the deposit and zeta computed as the chain
    computes its output columns (so a reprocessing output of the same events gives the same sample),
    and the truth when there is."""
    if score != "zeta":
        raise FluxError(f"event files give the score zeta only; {score!r} comes from reprocessing outputs")
    energy = np.asarray(events["bgo_energy"], dtype=np.float32)
    axis, _ = fit_shower_axis(energy)
    zeta = shower_input(energy)[:, ZETA]
    truth = np.asarray(events["true_energy"], dtype=np.float64) if "true_energy" in events else None
    return EventSample(axis, energy.sum(axis=(1, 2), dtype=np.float64), score_from("zeta", zeta), truth)


def sample_from_files(
    paths: list[str | Path], score: str = "zeta"
) -> tuple[EventSample, list[Generation], float]:
    """All events of `paths` as one sample, each MC file's generation (from its metadata), and the
    summed live time of flight-like files (their metadata's `live_time_s`)."""
    parts, generations, live = [], [], 0.0
    for path in paths:
        info = inspect_file(path)
        live += float(info.metadata.get("live_time_s", 0.0))
        parts.append(sample_from_events(read_events(path, info=info), score))
        if (gen := _generation(info)) is not None:
            generations.append(gen)
    return concat(parts), generations, live


def _generation(info) -> Generation | None:
    """How an MC event file was generated (None for flight data)."""
    gen = info.metadata.get("generation") or {}
    if info.mode != "mc" or "n_generated" not in info.metadata:
        return None
    n, lo, hi = info.metadata["n_generated"], gen["energy_min"], gen["energy_max"]
    return Generation(float(n), float(lo), float(hi), float(gen["spectrum_index"]))


def sample_from_reprocessed(
    uri: str, score: str = "electron_score", mc: bool = False, sources: Collection[str] | None = None
):
    """(sample, generations, live time) from a reprocessing output `uri`: its reconstructed events (the
    quarantined ones are in its own accounting), read with Ray Data; for MC, each event's true energy
    (from its input file, by event id) and each file's generation; for flight data, the summed
    `live_time_s` of the files' metadata. `sources`: only the events of these input files."""
    import ray

    from dampeml.inference.reprocess import committed_outputs

    outputs = committed_outputs(uri)
    if sources is not None:
        outputs = {k: v for k, v in outputs.items() if k in {str(x) for x in sources}}
    if not outputs:
        raise FluxError(
            f"{uri}: no reconstructed event" + (f" of {sorted(map(str, sources))}" if sources else "")
        )
    columns = ["event_id", *AXIS_COLUMNS, "bgo_energy_mev", score]
    ds = ray.data.read_parquet(list(outputs.values()), filesystem=Store.open(uri).fs, columns=columns,
                               include_paths=True)  # fmt: skip
    rows = pa.concat_tables(ray.get(ds.to_arrow_refs()))
    input_of = {Path(v).name: k for k, v in outputs.items()}
    files = np.array([input_of[Path(p).name] for p in rows.column("path").to_pylist()], dtype=object)
    truth = np.full(rows.num_rows, np.nan) if mc else None
    event_ids = rows.column("event_id").to_numpy()
    generations, live = [], 0.0
    for path in outputs:
        info = inspect_file(path)
        live += float(info.metadata.get("live_time_s", 0.0))
        if not mc:
            continue
        gen = _generation(info)
        if gen is None:
            raise FluxError(f"{path}: not an MC file recording its generation (MC samples need one)")
        generations.append(gen)
        events = read_events(path, branches=["event_id", "true_energy"], info=info)
        at = files == path
        order = np.argsort(events["event_id"])
        pos = order[np.searchsorted(events["event_id"], event_ids[at], sorter=order)]
        truth[at] = np.asarray(events["true_energy"])[pos]
    axis = np.stack([rows.column(c).to_numpy(zero_copy_only=False) for c in AXIS_COLUMNS], axis=1)
    sample = EventSample(
        np.asarray(axis, dtype=np.float64),
        rows.column("bgo_energy_mev").to_numpy(zero_copy_only=False).astype(np.float64),
        score_from(score, rows.column(score).to_numpy(zero_copy_only=False)),
        truth,
    )
    return sample, generations, live


def concat(parts: list[EventSample]) -> EventSample:
    truth = [p.true_energy_gev for p in parts]
    return EventSample(
        np.concatenate([p.axis for p in parts]),
        np.concatenate([p.deposit_mev for p in parts]),
        np.concatenate([p.score for p in parts]),
        None if any(t is None for t in truth) else np.concatenate(truth),
    )
