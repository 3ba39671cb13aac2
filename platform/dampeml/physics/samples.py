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
from dampeml.physics.networks import CLASSIFIERS, COMBINED, ENERGIES, ENERGY_NETWORK, RegisteredNetworks
from dampeml.reconstruction.chain import AXIS_COLUMNS, ZETA, shower_input
from dampeml.storage import Store

#: scores of the chain's output columns: zeta (DAMPE's classical variable) and the chain's HAMF score
COLUMN_SCORES = ("electron_score", "zeta")
#: every score the flux can cut on (the networks' from event files only)
SCORES = (*COLUMN_SCORES, *CLASSIFIERS, COMBINED)


def score_from(name: str, values: np.ndarray) -> np.ndarray:
    """The chain's output column `name` as a score that grows with electron-likeness."""
    v = np.asarray(values, dtype=np.float64)
    if name == "electron_score":
        return v
    if name == "zeta":  # DAMPE's classical variable: small for electrons
        return -np.log10(np.maximum(v, 1e-6))
    raise FluxError(f"unknown score {name!r}: use one of {list(SCORES)}")


def check_choice(score: str, energy: str) -> None:
    """FluxError naming the choices for an unknown score or energy estimate."""
    if score not in SCORES:
        raise FluxError(f"unknown score {score!r}: use one of {list(SCORES)}")
    if energy not in ENERGIES:
        raise FluxError(f"unknown energy estimate {energy!r}: use one of {list(ENERGIES)}")


def sample_from_events(
    events: dict, score: str = "zeta", energy: str = "standard", networks: RegisteredNetworks | None = None
) -> EventSample:
    """A sample from events as read: the standard axis fit, the deposit and zeta computed as the chain
    computes its output columns (so a reprocessing output of the same events gives the same sample),
    a network's score or energy (`networks`, see :mod:`.networks`), and the truth when there is."""
    check_choice(score, energy)
    bgo = np.asarray(events["bgo_energy"], dtype=np.float32)
    axis, _ = fit_shower_axis(bgo)
    networks = networks or RegisteredNetworks()
    values = event_score(score, bgo, networks)
    truth = np.asarray(events["true_energy"], dtype=np.float64) if "true_energy" in events else None
    own = networks.energy_gev(bgo) if energy == ENERGY_NETWORK else None
    return EventSample(axis, bgo.sum(axis=(1, 2), dtype=np.float64), values, truth, own)


def event_score(score: str, bgo_energy: np.ndarray, networks: RegisteredNetworks) -> np.ndarray:
    """(N,) the score `score` of events' BGO energies: zeta as the chain computes it, or a network's."""
    if score == "electron_score":
        raise FluxError("event files have no electron_score column (a reprocessing output's): use the "
                        "network itself, --score electron-proton")  # fmt: skip
    if score == "zeta":
        return score_from("zeta", shower_input(bgo_energy)[:, ZETA])
    return networks.score(score, bgo_energy)


def sample_from_files(
    paths: list[str | Path],
    score: str = "zeta",
    energy: str = "standard",
    networks: RegisteredNetworks | None = None,
) -> tuple[EventSample, list[Generation], float]:
    """All events of `paths` as one sample, each MC file's generation (from its metadata), and the
    summed live time of flight-like files (their metadata's `live_time_s`)."""
    parts, generations, live = [], [], 0.0
    networks = networks or RegisteredNetworks()
    for path in paths:
        info = inspect_file(path)
        live += float(info.metadata.get("live_time_s", 0.0))
        parts.append(sample_from_events(read_events(path, info=info), score, energy, networks))
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

    if score not in COLUMN_SCORES:
        raise FluxError(f"a reprocessing output holds the scores {list(COLUMN_SCORES)}; {score!r} is "
                        "computed from event files: give the event files instead")  # fmt: skip

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
    def joined(values: list[np.ndarray | None]) -> np.ndarray | None:
        return None if any(v is None for v in values) else np.concatenate(values)

    return EventSample(
        np.concatenate([p.axis for p in parts]),
        np.concatenate([p.deposit_mev for p in parts]),
        np.concatenate([p.score for p in parts]),
        joined([p.true_energy_gev for p in parts]),
        joined([p.energy_gev for p in parts]),
    )
