"""Write event files: one `events` tree plus a JSON metadata string, committed atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from dampeml.io.schema import BRANCHES, JAGGED, METADATA_KEY, TREE_NAME
from dampeml.storage import atomic_file

COMPRESSION = uproot.ZLIB(4)
BASKET_EVENTS = 1000


def write_event_file(path: str | os.PathLike, branches: dict, metadata: dict) -> Path:
    """Write `branches` (schema names) and `metadata` to `path`.

    The file is written under a temporary name in the same directory and renamed into
    place, so a killed writer never leaves a file under the final name.
    """
    path = Path(path)
    tree: dict[str, object] = {}
    for b in BRANCHES:
        if b.name in branches and not b.jagged:
            tree[b.name] = np.asarray(branches[b.name], dtype=b.dtype)
    present = [name for name in JAGGED if name in branches]
    if present:
        tree["stk"] = ak.zip({name[len("stk_") :]: branches[name] for name in present})
    with atomic_file(path) as tmp, uproot.recreate(tmp, compression=COMPRESSION) as f:
        f[METADATA_KEY] = json.dumps(metadata, default=_json_default)
        # mktree: a TTree (plain assignment of a dict makes an RNTuple in uproot >= 5.7).
        # Baskets of BASKET_EVENTS, so that reading an event range decompresses only that range.
        n = len(next(iter(tree.values()))) if tree else 0
        bounds = range(0, max(n, 1), BASKET_EVENTS)
        out = None
        for start in bounds:
            chunk = {k: v[start : start + BASKET_EVENTS] for k, v in tree.items()}
            if out is None:
                out = f.mktree(TREE_NAME, chunk, title="DAMPE events")
            else:
                out.extend(chunk)
    return path


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} into file metadata")
