"""The event-file contract: tree name, branch names, dtypes and shapes.

These names are fixed so that outside tools can rely on them. The writer and the
reader both take them from here, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dampeml import geometry as geo
from dampeml.errors import InputError

TREE_NAME = "events"
METADATA_KEY = "metadata"  # a TObjString holding JSON: geometry, run, generator, versions
#: 2: the optional `stk_width` (simulation version 3 on)
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Branch:
    """One branch of the `events` tree."""

    name: str
    dtype: str
    shape: tuple[int, ...] = ()  # per-event fixed shape; () for a scalar
    jagged: bool = False  # one value per STK cluster
    mc_only: bool = False
    #: absent from some valid files (written only by newer simulation versions); readers use it
    #: where every file of a read has it
    optional: bool = False
    doc: str = ""


BRANCHES: tuple[Branch, ...] = (
    Branch("run_id", "int64", doc="run number"),
    Branch("event_id", "int64", doc="event number, unique within the run"),
    Branch("event_time", "float64", doc="seconds since the start of the run"),
    Branch(
        "bgo_energy",
        "float32",
        (geo.BGO_N_LAYERS, geo.BGO_N_BARS),
        doc="energy per bar in MeV; row = layer from the top (even rows measure x)",
    ),
    Branch("psd_energy", "float32", (geo.PSD_N_LAYERS, geo.PSD_BARS_PER_LAYER), doc="MeV per bar"),
    Branch("stk_layer", "int8", jagged=True, doc="0-11, even layers measure x"),
    Branch("stk_half", "int8", jagged=True, doc="readout half, 0-1"),
    Branch("stk_channel", "int16", jagged=True, doc="readout channel, 0-3071"),
    Branch("stk_pos", "float32", jagged=True, doc="measured coordinate in mm"),
    Branch("stk_signal", "float32", jagged=True, doc="cluster signal in MIP units (~1 for p)"),
    Branch(
        "stk_width",
        "int8",
        jagged=True,
        optional=True,
        doc="readout strips in the cluster (simulation version 3 on; absent before)",
    ),
    Branch("true_pdg", "int32", mc_only=True, doc="PDG code of the primary"),
    Branch("true_energy", "float64", mc_only=True, doc="kinetic energy in GeV"),
    Branch("true_x_top", "float64", mc_only=True, doc="mm at the first STK plane"),
    Branch("true_y_top", "float64", mc_only=True, doc="mm at the first STK plane"),
    Branch("true_x_bot", "float64", mc_only=True, doc="mm at the last STK plane"),
    Branch("true_y_bot", "float64", mc_only=True, doc="mm at the last STK plane"),
    Branch("true_theta", "float64", mc_only=True, doc="zenith angle of the primary, rad"),
    Branch("true_phi", "float64", mc_only=True, doc="azimuth of the primary, rad"),
    Branch("true_inelastic", "bool", mc_only=True, doc="inelastic interaction before the BGO"),
    Branch(
        "true_interaction_z",
        "float64",
        mc_only=True,
        doc="z of the first inelastic interaction in mm (+inf if none before the end of the BGO)",
    ),
    Branch("stk_is_primary", "bool", jagged=True, mc_only=True, doc="cluster made by the primary"),
)

BY_NAME = {b.name: b for b in BRANCHES}
JAGGED = tuple(b.name for b in BRANCHES if b.jagged)
COUNTER = "nstk"  # uproot's counter branch for the jagged `stk_*` branches
MC_ONLY = tuple(b.name for b in BRANCHES if b.mc_only)
OPTIONAL = tuple(b.name for b in BRANCHES if b.optional)


def required_branches(mode: str) -> tuple[str, ...]:
    """Branches a file of this mode ('mc' or 'flight') must carry."""
    if mode not in ("mc", "flight"):
        raise InputError(f"unknown mode {mode!r}: use 'mc' or 'flight'")
    return tuple(b.name for b in BRANCHES if (mode == "mc" or not b.mc_only) and not b.optional)


def readable_branches(mode: str, present: list[set[str]] | tuple[set[str], ...]) -> tuple[str, ...]:
    """The required branches of `mode` and the optional ones every file (`present`: each file's
    branch names) carries: what a read of those files can give every row."""
    extra = tuple(b for b in OPTIONAL if present and all(b in p for p in present))
    return required_branches(mode) + extra


PDG = {"proton": 2212, "helium": 1000020040, "electron": 11}
CHARGE = {"proton": 1, "helium": 2, "electron": 1}
PARTICLE_OF_PDG = {v: k for k, v in PDG.items()}


def numpy_dtype(name: str) -> np.dtype:
    return np.dtype(BY_NAME[name].dtype)
