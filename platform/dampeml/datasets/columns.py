"""Stored columns of a dataset: identity, features and targets as compact Arrow arrays.

Images that the input pipeline can render are stored sparse: the raw STK image as its
clusters, Hough images as the hits inside the RoI plus the RoI centre. The BGO image is
stored as its 308 bytes.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np
import pyarrow as pa

from dampeml.datasets.spec import DatasetSpec, Roi
from dampeml.datasets.split import event_uniform
from dampeml.datasets.units import PARTICLES
from dampeml.features import COARSE, PRECISE, bgo_image, fit_shower_axis, select_roi_hits, shower_variables
from dampeml.features.hough import hough_targets
from dampeml.features.tracks import truth_track
from dampeml.io.schema import PARTICLE_OF_PDG

TRACK = ("x_top", "y_top", "x_bot", "y_bot")
GEOMETRIES = {"precise": PRECISE, "coarse": COARSE}


def fixed_binary(values: np.ndarray) -> pa.Array:
    """(N, ...) uint8 -> FixedSizeBinary: one opaque blob per event, no per-row overhead."""
    n = len(values)
    width = int(np.prod(values.shape[1:]))
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), n, [None, pa.py_buffer(np.ascontiguousarray(values).tobytes())]
    )


def fixed_list(values: np.ndarray) -> pa.Array:
    """(N, K) -> FixedSizeList<K>."""
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(values).ravel()), values.shape[1])


def list_column(flat: np.ndarray, counts: np.ndarray) -> pa.Array:
    """Flat values + per-event counts -> List (int32 offsets)."""
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))


def _gaussian(run_id: np.ndarray, event_id: np.ndarray, salt: int) -> np.ndarray:
    """A standard normal number per event identity (Box-Muller on two identity hashes)."""
    u1 = np.maximum(event_uniform(run_id, event_id, salt), 1e-300)
    u2 = event_uniform(run_id, event_id, salt + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)


def roi_centre(events: dict, roi: Roi, chain: Any = None) -> tuple[np.ndarray, dict]:
    """The (N, 4) upstream prediction the Hough RoI is centred on, and what made it.

    `chain`: for roi.source 'model', the partial reconstruction chain of the registered upstream
    models (loaded once per actor by the build), which reads no truth.
    """
    if roi.source == "truth-smeared":
        truth = truth_track(events)
        noise = np.stack(
            [_gaussian(events["run_id"], events["event_id"], 0x7000 + 2 * i) for i in range(4)], axis=1
        )
        return truth + roi.smear_mm * noise, {"roi": f"truth smeared by {roi.smear_mm} mm (MC stand-in)"}
    if roi.source == "axis-fit":
        pred, valid = fit_shower_axis(events["bgo_energy"])
        pred[~valid] = np.nan
        return pred, {"roi": "BGO shower-axis fit"}
    if chain is None:
        raise ValueError("roi.source 'model' needs the upstream chain (dataset build's actor pool)")
    versions = ", ".join(f"{n} v{v}" for n, v in sorted(chain.versions.items()))
    return chain.upstream_track(events, roi.upstream), {
        "roi": f"chain track after {roi.upstream} ({versions})"
    }


def feature_columns(
    events: dict, spec: DatasetSpec, chain: Any = None
) -> tuple[dict[str, pa.Array], np.ndarray, dict]:
    """Columns to store for the selected events, a keep-mask (RoI requirement), upstream info."""
    n = len(events["event_id"])
    mc = "true_pdg" in events
    cols: dict[str, pa.Array] = {
        "run_id": pa.array(np.asarray(events["run_id"], dtype=np.int64)),
        "event_id": pa.array(np.asarray(events["event_id"], dtype=np.int64)),
        "deposit_gev": pa.array((events["bgo_energy"].sum(axis=(1, 2)) / 1e3).astype(np.float32)),
        "particle": pa.array(particle_labels(events)),
    }
    if mc:
        cols["true_energy"] = pa.array(np.asarray(events["true_energy"], dtype=np.float32))
        cols["true_inelastic"] = pa.array(np.asarray(events["true_inelastic"], dtype=bool))
        truth = truth_track(events)
        for i, name in enumerate(TRACK):
            cols[f"true_{name}"] = pa.array(truth[:, i].astype(np.float32))
    keep = np.ones(n, dtype=bool)
    upstream: dict = {}
    if "bgo_image" in spec.features:
        cols["bgo_image"] = fixed_binary(bgo_image(events["bgo_energy"]))
    if "shower_variables" in spec.features:
        values, _names = shower_variables(events["bgo_energy"])
        cols["shower_variables"] = fixed_list(values.astype(np.float32))
    if "stk_clusters" in spec.features:
        counts = ak.num(events["stk_layer"]).to_numpy()
        for name in ("stk_layer", "stk_half", "stk_channel", "stk_signal"):
            cols[name] = list_column(ak.flatten(events[name]).to_numpy(), counts)
    if "hough_hits" in spec.features or "hough_offsets" in spec.targets:
        assert spec.roi is not None  # guaranteed by the spec validator
        geometry = GEOMETRIES[spec.roi.geometry]
        centre, upstream = roi_centre(events, spec.roi, chain)
        for i, name in enumerate(TRACK):
            cols[f"roi_{name}"] = pa.array(centre[:, i].astype(np.float32))
        hits = select_roi_hits(events["stk_layer"], events["stk_pos"], events["stk_signal"], centre, geometry)
        cols["hough_layer"] = list_column(hits.layer, hits.counts)
        cols["hough_offset"] = list_column(hits.offset, hits.counts)
        cols["hough_signal"] = list_column(hits.signal, hits.counts)
        if spec.selection.require_hough_hits:
            keep &= hits.counts > 0
        if "hough_offsets" in spec.targets and mc:
            target = hough_targets(truth_track(events), centre, geometry)
            for i, name in enumerate(TRACK):
                cols[f"hough_target_{name}"] = pa.array(target[:, i].astype(np.float32))
    return cols, keep, upstream


def particle_labels(events: dict) -> np.ndarray:
    """Index into PARTICLES (proton 0, helium 1, electron 2); -1 without truth."""
    if "true_pdg" not in events:
        return np.full(len(events["event_id"]), -1, dtype=np.int8)
    lut = {pdg: PARTICLES.index(name) for pdg, name in PARTICLE_OF_PDG.items()}
    pdg = np.asarray(events["true_pdg"])
    out = np.full(len(pdg), -1, dtype=np.int8)
    for code, idx in lut.items():
        out[pdg == code] = idx
    return out
