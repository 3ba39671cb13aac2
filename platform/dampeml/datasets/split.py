"""Deterministic train/val/test assignment from the event identity.

The split of an event depends only on (run_id, event_id) and a salt, never on the order
of processing or on which other events exist, so a rebuild cannot move an event between
splits, and the same event lands in the same split of every dataset that contains it.
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a well-mixed 64-bit hash, vectorized."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def event_uniform(run_id: np.ndarray, event_id: np.ndarray, salt: int = 0) -> np.ndarray:
    """A uniform number in [0, 1) per event identity (and salt), reproducible everywhere."""
    r = np.asarray(run_id).astype(np.uint64)
    e = np.asarray(event_id).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = _splitmix64(_splitmix64(r ^ np.uint64(salt) * np.uint64(0x632BE59BD9B4E019)) ^ e)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign_split(
    run_id: np.ndarray, event_id: np.ndarray, train: float = 0.8, val: float = 0.1
) -> np.ndarray:
    """'train' / 'val' / 'test' per event."""
    u = event_uniform(run_id, event_id, salt=0x5B117)
    return np.where(u < train, "train", np.where(u < train + val, "val", "test"))
