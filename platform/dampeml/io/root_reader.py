"""Read and validate event files.

Every problem with a file surfaces as one `EventFileError` that names the file, what is
wrong and what to do; no bare uproot or numpy traceback reaches the user. Problems
confined to single events (NaNs, out-of-range STK fields) are reported per event by
`bad_events`, so a dataset build can quarantine the event and keep the rest of the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from dampeml import geometry as geo
from dampeml.errors import InputError
from dampeml.io.schema import BRANCHES, BY_NAME, JAGGED, MC_ONLY, METADATA_KEY, TREE_NAME, required_branches


class EventFileError(InputError):
    """A file that cannot be used as it is. `str()` says which file, what is wrong, what to do."""

    def __init__(self, path: str | os.PathLike, problem: str, hint: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        self.hint = hint
        super().__init__(f"{self.path}: {problem}" + (f" -- {hint}" if hint else ""))

    def __reduce__(self):  # picklable across Ray task boundaries
        return (type(self), (self.path, self.problem, self.hint))


REGENERATE = "regenerate or re-transfer the file, or exclude it from the input"
MODES = ("mc", "flight")  # 'mc' carries the truth branches, 'flight' does not


@dataclass(frozen=True)
class EventFileInfo:
    """What a file is, before reading its events."""

    path: str
    n_events: int
    mode: str  # 'mc' (with truth) or 'flight'
    metadata: dict
    branches: tuple[str, ...]


def _open_tree(path: str):
    if not Path(path).exists() and "://" not in path:
        raise EventFileError(path, "no such file", "check the path or glob")
    try:
        f = uproot.open(path)
    except Exception as exc:  # uproot raises many types for damaged files
        raise EventFileError(
            path, f"not a readable ROOT file ({type(exc).__name__}: {exc})", REGENERATE
        ) from exc
    try:
        keys = {k.split(";")[0] for k in f.keys()}
    except Exception as exc:
        raise EventFileError(path, f"corrupt ROOT directory ({type(exc).__name__})", REGENERATE) from exc
    if TREE_NAME not in keys:
        raise EventFileError(
            path,
            f"no '{TREE_NAME}' tree (found: {sorted(keys) or 'nothing'})",
            "is this a dampeml event file?",
        )
    try:
        tree = f[TREE_NAME]
        n = tree.num_entries
        names = tuple(tree.keys())
    except Exception as exc:
        raise EventFileError(
            path,
            f"cannot read the '{TREE_NAME}' tree "
            f"({type(exc).__name__}: {exc}); the file is probably truncated",
            REGENERATE,
        ) from exc
    metadata: dict = {}
    if METADATA_KEY in keys:
        try:
            metadata = json.loads(str(f[METADATA_KEY]))
        except Exception as exc:
            raise EventFileError(path, "unreadable metadata", REGENERATE) from exc
        if not isinstance(metadata, dict):
            raise EventFileError(
                path, f"metadata is a JSON {type(metadata).__name__}, not an object", REGENERATE
            )
    return f, tree, n, names, metadata


def inspect_file(path: str | os.PathLike) -> EventFileInfo:
    """Open a file and check its structure: tree, branches, shapes, not empty."""
    path = str(path)
    f, tree, n, names, metadata = _open_tree(path)
    with f:
        if n == 0:
            raise EventFileError(path, "the file holds no events", "drop it from the input")
        mode = metadata.get("mode") or ("mc" if all(b in names for b in MC_ONLY) else "flight")
        if mode not in MODES:  # every consumer picks models and branches by mode: refuse, never guess
            raise EventFileError(
                path,
                f"unknown mode {mode!r} in the file's metadata (expected one of {', '.join(MODES)})",
                f"fix the metadata's 'mode' or {REGENERATE}",
            )
        need = required_branches(mode)
        missing = [b for b in need if b not in names]
        if missing:
            raise EventFileError(
                path,
                f"missing branches: {', '.join(missing)}",
                f"a {mode} file needs all of them; {REGENERATE}",
            )
        for name in ("bgo_energy", "psd_energy"):
            shape = getattr(tree[name].interpretation, "inner_shape", ())
            want = BY_NAME[name].shape
            if tuple(shape) != want:
                raise EventFileError(
                    path,
                    f"branch {name} has shape {tuple(shape)} per event, expected {want}",
                    "the file was written with another geometry",
                )
    return EventFileInfo(path, n, mode, metadata, names)


def read_events(
    path: str | os.PathLike,
    entry_start: int = 0,
    entry_stop: int | None = None,
    branches: list[str] | None = None,
    info: EventFileInfo | None = None,
) -> dict:
    """Read an event range: fixed-size branches as numpy, STK branches as awkward arrays."""
    info = info or inspect_file(path)
    names = list(branches) if branches is not None else [b.name for b in BRANCHES if b.name in info.branches]
    unknown = [b for b in names if b not in info.branches]
    if unknown:
        raise EventFileError(
            info.path,
            f"missing branches: {', '.join(unknown)}",
            "flight files carry no truth" if set(unknown) & set(MC_ONLY) else REGENERATE,
        )
    stop = info.n_events if entry_stop is None else min(entry_stop, info.n_events)
    try:
        with uproot.open(info.path) as f:
            arrays = f[TREE_NAME].arrays(
                names, entry_start=entry_start, entry_stop=stop, library="ak", how=dict
            )
    except Exception as exc:
        raise EventFileError(
            info.path,
            f"cannot read events {entry_start}-{stop} "
            f"({type(exc).__name__}: {exc}); the file is probably truncated or corrupt",
            REGENERATE,
        ) from exc
    return {k: (v if k in JAGGED else ak.to_numpy(v)) for k, v in arrays.items()}


def bad_events(events: dict) -> np.ndarray:
    """One reason per event ('' where fine): NaNs/infs, negative energies, STK fields out of range."""
    n = len(next(iter(events.values())))
    reasons = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, why: str) -> None:
        sel = np.asarray(mask) & (reasons == "")
        reasons[sel] = why

    for name in ("bgo_energy", "psd_energy"):
        if name in events:
            a = events[name].reshape(n, -1)
            flag(~np.isfinite(a).all(axis=1), f"non-finite values in {name}")
            flag((a < 0).any(axis=1), f"negative energy in {name}")
    for name in ("stk_pos", "stk_signal"):
        if name in events:
            flag(~ak.to_numpy(ak.all(np.isfinite(events[name]), axis=1)), f"non-finite values in {name}")
    limits = {
        "stk_layer": geo.STK_N_LAYERS,
        "stk_half": geo.STK_N_HALVES,
        "stk_channel": geo.STK_CHANNELS_PER_HALF,
    }
    for name, hi in limits.items():
        if name in events:
            v = events[name]
            flag(~ak.to_numpy(ak.all((v >= 0) & (v < hi), axis=1)), f"{name} outside 0-{hi - 1}")
    if "stk_width" in events:
        flag(~ak.to_numpy(ak.all(events["stk_width"] >= 1, axis=1)), "stk_width below 1")
    for name in ("true_x_top", "true_y_top", "true_x_bot", "true_y_bot", "true_energy"):
        if name in events:
            flag(~np.isfinite(events[name]), f"non-finite {name}")
    return reasons


def read_validated(path: str | os.PathLike, **kwargs) -> dict:
    """Read a whole file and raise if any event is bad: the strict reader for tools and plots."""
    events = read_events(path, **kwargs)
    reasons = bad_events(events)
    bad = np.flatnonzero(reasons != "")
    if len(bad):
        ids = events["event_id"][bad] if "event_id" in events else bad
        raise EventFileError(
            path,
            f"{len(bad)} bad events, e.g. event_id {ids[0]}: {reasons[bad[0]]}",
            "a dataset build quarantines such events; or regenerate the file",
        )
    return events
