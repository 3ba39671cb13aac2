"""One work unit, start to finish: events in, shards and an accounting marker out.

Every event the unit reads ends in exactly one of: written (to one split), filtered
(with the selection reason), quarantined (with the file, event and reason). An event whose
identity repeats an earlier one (found on the driver, `build.find_unit_repeats`, handed over in
`context["duplicates"]`) is quarantined as DUPLICATE, and its line names the kept copy.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections import Counter

import numpy as np
import pyarrow as pa

from dampeml.bookkeeping import Ledger, check_accounting
from dampeml.datasets.columns import feature_columns, particle_labels
from dampeml.datasets.spec import DatasetSpec
from dampeml.datasets.split import SPLITS, assign_split, event_uniform
from dampeml.datasets.units import PARTICLES, WorkUnit
from dampeml.detector.simulation import FlightConditions, SimulationConfig, simulate
from dampeml.io.datasource import DUPLICATE
from dampeml.io.root_reader import EventFileError, bad_events, read_events
from dampeml.storage import UNITS_DIR, Store

BUILD_FILE = "_build.json"

_DECADES = np.arange(-3, 9)
_DECADE_LABELS = np.array([f"1e{d}-1e{d + 1}" for d in _DECADES], dtype=object)
_PARTICLE_NAMES = np.array(["unknown", *PARTICLES], dtype=object)  # index: label + 1


def detector_conditions(fields: tuple[float, ...]) -> FlightConditions | None:
    """A unit's detector conditions (WorkUnit.detector), None for the nominal detector."""
    if not fields:
        return None
    ox, oy, tx, ty, stk_scale, bgo_scale = fields
    return FlightConditions((ox, oy), (tx, ty), stk_scale, bgo_scale)


def load_unit_events(unit: WorkUnit) -> dict:
    """The unit's events: read from its file range, or simulated in memory."""
    if unit.source == "file":
        return read_events(unit.path, unit.entry_start, unit.entry_start + unit.n_events)
    cfg = SimulationConfig(
        unit.particle,
        unit.n_events,
        unit.energy_min,
        unit.energy_max,
        unit.spectrum_index,
        mode=unit.mode,
        seed=unit.seed,
        run_id=unit.run_id,
        detector=detector_conditions(unit.detector),
    )
    branches, _ = simulate(cfg)
    return branches


def take(events: dict, mask: np.ndarray) -> dict:
    """Select events from a mix of numpy and awkward per-event arrays."""
    return {k: v[mask] for k, v in events.items()}


def energy_bin_labels(energy_gev: np.ndarray) -> np.ndarray:
    """Decade bins ('1e2-1e3' GeV) for the manifest's per-energy counts."""
    d = np.clip(np.floor(np.log10(np.maximum(energy_gev, 1e-3))).astype(int), _DECADES[0], _DECADES[-1])
    return _DECADE_LABELS[d - _DECADES[0]]


def electron_keep_probabilities(planned: dict[str, int], fraction: float) -> tuple[float, float]:
    """(p_keep electron, p_keep hadron) so that electrons make `fraction` of the kept events."""
    n_e = planned.get("electron", 0)
    n_h = sum(v for k, v in planned.items() if k != "electron")
    if n_e == 0 or n_h == 0 or fraction in (0.0, 1.0):
        return (1.0 if fraction > 0 else 0.0), (1.0 if fraction < 1 else 0.0)
    if n_e / (n_e + n_h) > fraction:
        return fraction * n_h / ((1 - fraction) * n_e), 1.0
    return 1.0, (1 - fraction) * n_e / (fraction * n_h)


def select(events: dict, spec: DatasetSpec, context: dict) -> np.ndarray:
    """The first selection reason that rejects each event ('' = kept)."""
    sel = spec.selection
    n = len(events["event_id"])
    reasons = np.full(n, "", dtype=object)

    def reject(mask: np.ndarray, why: str) -> None:
        reasons[mask & (reasons == "")] = why

    deposit = events["bgo_energy"].sum(axis=(1, 2)) / 1e3
    reject(~sel.deposit_gev.contains(deposit), "deposited energy outside the selected range")
    if sel.true_energy_gev.min is not None or sel.true_energy_gev.max is not None:
        reject(~sel.true_energy_gev.contains(events["true_energy"]), "true energy outside the selected range")
    if sel.electron_fraction is not None and "true_pdg" in events:
        p_e, p_h = electron_keep_probabilities(context["planned_particles"], sel.electron_fraction)
        is_e = particle_labels(events) == PARTICLES.index("electron")
        u = event_uniform(events["run_id"], events["event_id"], salt=0xE1EC)
        reject(u >= np.where(is_e, p_e, p_h), "particle-mix downsampling (electron_fraction)")
    return reasons


def process_unit(unit: WorkUnit, spec: DatasetSpec, store: Store, context: dict) -> dict:
    """Run one unit and commit it; returns its accounting (also written as its marker).

    A worker runs unit after unit: reading an event file leaves reference cycles that hold the
    unit's arrays until a full garbage collection, so a worker's memory grew by ~20 MB per 20,000-event
    unit (benchmarks/README.md, "Scale"); collecting after each unit keeps it flat.
    """
    try:
        return _process_unit(unit, spec, store, context)
    finally:
        release_memory()


def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def release_memory() -> None:
    """After a unit, hand what it freed back to the system: collect reference cycles, then let
    pyarrow's pool and the C heap (numpy's and awkward's arrays) return their free pages: a build
    worker's peak was 4-8% lower at 1e5 and 1e7 events (benchmarks/README.md, "Scale", run 9)."""
    gc.collect()
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _process_unit(unit: WorkUnit, spec: DatasetSpec, store: Store, context: dict) -> dict:
    acc: dict = {
        "unit": unit.unit_id,
        "read": unit.n_events,
        "filtered": Counter(),
        "quarantined": Counter(),
        "quarantine_list": [],
        "shards": {},
        "upstream": {},
    }
    where = unit.path or unit.unit_id
    # {entry: [kept label, kept entry]}; entries count from the file's start (simulation: from 0)
    repeats = {int(e): [lbl, int(k)] for e, lbl, k in context.get("duplicates", {}).get(unit.unit_id, [])}
    try:
        events = load_unit_events(unit)
    except EventFileError as exc:
        acc["quarantined"][f"unreadable event range: {exc.problem}"] += unit.n_events
        acc["quarantine_list"].append(
            {
                "file": where,
                "entries": [unit.entry_start, unit.entry_start + unit.n_events],
                "reason": exc.problem,
            }
            | ({"duplicates": sorted(repeats)} if repeats else {})  # a resume must know them
        )
        return _commit(store, unit, acc)
    n = len(events["event_id"])
    if n != unit.n_events:  # never silently lose events
        raise RuntimeError(f"{where}: expected {unit.n_events} events, got {n}")

    bad = bad_events(events)
    if repeats:
        local = np.fromiter(repeats, dtype=np.int64) - unit.entry_start
        bad[local[bad[local] == ""]] = DUPLICATE  # a bad repeat keeps its own reason
    for i in np.flatnonzero(bad != ""):
        entry = unit.entry_start + int(i)
        acc["quarantined"][bad[i]] += 1
        acc["quarantine_list"].append(
            {
                "file": where,
                "entry": entry,
                "run_id": int(events["run_id"][i]),
                "event_id": int(events["event_id"][i]),
                "reason": bad[i],
            }
            | (
                {"duplicate_of": {"file": repeats[entry][0], "entry": repeats[entry][1]}}
                if entry in repeats
                else {}
            )
        )
    events = take(events, bad == "")

    why = select(events, spec, context)
    acc["filtered"].update(Counter(why[why != ""].tolist()))
    events = take(events, why == "")

    cols, keep, upstream = feature_columns(events, spec, context.get("upstream_chain"))
    acc["upstream"].update(upstream)
    dropped = ~keep
    if dropped.any():
        acc["filtered"]["no STK hit in the Hough RoI"] += int(dropped.sum())
        cols = {k: v.filter(pa.array(keep)) for k, v in cols.items()}
        events = take(events, keep)

    split = assign_split(events["run_id"], events["event_id"], spec.split.train, spec.split.val)
    energy = events["true_energy"] if "true_energy" in events else events["bgo_energy"].sum(axis=(1, 2)) / 1e3
    ebins = energy_bin_labels(np.asarray(energy))
    labels = particle_labels(events)
    table = pa.table(cols)
    for s in SPLITS:
        m = split == s
        if not m.any():
            continue
        rel = f"{s}/{unit.unit_id}.parquet"
        nbytes = store.write_parquet(rel, table.filter(pa.array(m)))
        acc["shards"][s] = {
            "file": rel,
            "events": int(m.sum()),
            "bytes": nbytes,
            "particles": dict(Counter(_PARTICLE_NAMES[labels[m] + 1].tolist())),
            "energy_bins": dict(Counter(ebins[m].tolist())),
        }
    return _commit(store, unit, acc)


def build_ledger(store: Store) -> Ledger:
    """A dataset build's parameters (`_build.json`) and unit markers (`_units/`)."""
    return Ledger(store, BUILD_FILE, UNITS_DIR)


def _commit(store: Store, unit: WorkUnit, acc: dict) -> dict:
    acc = {**acc, "filtered": dict(acc["filtered"]), "quarantined": dict(acc["quarantined"])}
    check_accounting(
        f"unit {unit.unit_id}",
        acc["read"],
        written=sum(sh["events"] for sh in acc["shards"].values()),
        filtered=sum(acc["filtered"].values()),
        quarantined=sum(acc["quarantined"].values()),
    )
    build_ledger(store).commit(unit.unit_id, acc)
    return acc
