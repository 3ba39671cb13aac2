"""Per-event hit lists as flat numpy arrays plus counts, whatever form they arrive in.

The reader gives awkward arrays; datasets (Ray Data in pyarrow batch format) give
pyarrow list arrays; the input pipeline may hold flat arrays and counts. Every feature
function takes any of them through :func:`flatten` (zero-copy where the source allows),
so the hot path only ever sees flat numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import awkward as ak
import numpy as np
import pyarrow as pa


def flatten(arrays: Sequence, counts: np.ndarray | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(counts, flat arrays) from jagged awkward or pyarrow arrays, or from flat arrays with `counts`.

    All arrays must share one layout; a mismatch raises ValueError instead of silently
    mixing hits of different events.
    """
    if counts is None:
        arrays = [_as_awkward(a) for a in arrays]
        counts = ak.to_numpy(ak.num(arrays[0], axis=1)).astype(np.int64)
        flat = [ak.to_numpy(ak.flatten(a, axis=1)) for a in arrays]
        for a in arrays[1:]:
            if not np.array_equal(ak.to_numpy(ak.num(a, axis=1)), counts):
                raise ValueError("jagged hit arrays have different numbers of hits per event")
    else:
        counts = np.asarray(counts, dtype=np.int64)
        flat = [np.asarray(a) for a in arrays]
    total = int(counts.sum())
    for a in flat:
        if a.ndim != 1 or len(a) != total:
            raise ValueError(f"hit array of shape {a.shape} does not match counts (sum {total})")
    return counts, flat


def event_index(counts: np.ndarray) -> np.ndarray:
    """The event number of each flat hit."""
    return np.repeat(np.arange(len(counts)), counts)


def gather_index(counts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Flat indices of the items of events `rows` (in that order) in flat arrays of `counts`."""
    counts = np.asarray(counts)
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)])[rows]
    sub = counts[rows]
    total = int(sub.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    return np.arange(total, dtype=np.int64) + np.repeat(
        starts - np.concatenate([[0], np.cumsum(sub)[:-1]]), sub
    )


def _as_awkward(a: object) -> ak.Array:
    if isinstance(a, ak.Array):
        return a
    if isinstance(a, pa.Array | pa.ChunkedArray):
        return ak.from_arrow(a)
    raise ValueError(
        f"{type(a).__name__} hit arrays need `counts` (hits per event); or pass awkward/pyarrow lists"
    )
