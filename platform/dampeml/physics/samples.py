"""Event samples for the flux measurement, from event files (the shower variables computed here) or
from reprocessing outputs (the chain's columns), and how an MC file was generated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dampeml.features.shower_axis import fit_shower_axis
from dampeml.features.shower_variables import SHOWER_VARIABLE_NAMES, shower_variables
from dampeml.io.root_reader import inspect_file, read_events
from dampeml.physics.flux import FluxError
from dampeml.physics.measure import EventSample, Generation

#: scores the flux can cut on: name -> (the chain's output column, transform to "higher is more electron")
SCORES = ("electron_score", "zeta")
ZETA = SHOWER_VARIABLE_NAMES.index("zeta")


def score_from(name: str, values: np.ndarray) -> np.ndarray:
    """The classifier output `name` as a score that grows with electron-likeness."""
    v = np.asarray(values, dtype=np.float64)
    if name == "electron_score":
        return v
    if name == "zeta":  # DAMPE's classical variable: small for electrons
        return -np.log10(np.maximum(v, 1e-6))
    raise FluxError(f"unknown score {name!r}: use one of {list(SCORES)}")


def sample_from_events(events: dict, score: str = "zeta") -> EventSample:
    """A sample from events as read (the standard axis fit, the deposit, zeta), truth when there is."""
    if score != "zeta":
        raise FluxError(f"event files give the score zeta only; {score!r} comes from reprocessing outputs")
    energy = np.asarray(events["bgo_energy"], dtype=np.float64)
    axis, _ = fit_shower_axis(energy)
    zeta = shower_variables(energy)[0][:, ZETA]
    truth = np.asarray(events["true_energy"], dtype=np.float64) if "true_energy" in events else None
    return EventSample(axis, energy.sum(axis=(1, 2)), score_from("zeta", zeta), truth)


def sample_from_files(paths: list[str | Path], score: str = "zeta") -> tuple[EventSample, list[Generation]]:
    """All events of `paths` as one sample, and each file's generation (MC: from its metadata)."""
    parts, generations = [], []
    for path in paths:
        info = inspect_file(path)
        parts.append(sample_from_events(read_events(path, info=info), score))
        gen = info.metadata.get("generation") or {}
        if info.mode == "mc" and "n_generated" in info.metadata:
            n, lo, hi = info.metadata["n_generated"], gen["energy_min"], gen["energy_max"]
            generations.append(Generation(float(n), float(lo), float(hi), float(gen["spectrum_index"])))
    return concat(parts), generations


def concat(parts: list[EventSample]) -> EventSample:
    truth = [p.true_energy_gev for p in parts]
    return EventSample(
        np.concatenate([p.axis for p in parts]),
        np.concatenate([p.deposit_mev for p in parts]),
        np.concatenate([p.score for p in parts]),
        None if any(t is None for t in truth) else np.concatenate(truth),
    )
