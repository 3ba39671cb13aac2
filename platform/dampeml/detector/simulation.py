"""The fast DAMPE simulation: primaries in, DAMPE-like events out (pure numpy).

`simulate(config)` returns the branches of the event file (see `dampeml.io.schema`)
and the run metadata. Events are simulated in fixed-size chunks, each with its own
child seed of the run seed, so the same seed always gives the same events and a
shorter run is a prefix of a longer one with the same seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

import awkward as ak
import numpy as np

from dampeml import __version__
from dampeml import geometry as geo
from dampeml.detector import bgo, psd, stk
from dampeml.detector.delta_rays import delta_rays
from dampeml.detector.generator import generate_primaries
from dampeml.detector.propagation import propagate, sample_interactions
from dampeml.detector.strips import digitize_strips
from dampeml.detector.trigger import high_energy_trigger
from dampeml.errors import InputError
from dampeml.io.schema import CHARGE, MC_ONLY, PDG, SCHEMA_VERSION

Particle = Literal["proton", "helium", "electron"]
CHUNK_EVENTS = 1000
#: Version of the simulation's physics, bumped with every entry of the calibration log in
#: docs/simulation.md (5: the hadronic core's energy per layer brought by few hadrons past one
#: interaction length). Written into every file and dataset, so a dataset build never mixes events of
#: two physics versions (a resume across a bump is refused).
SIMULATION_VERSION = 5
#: The version before: still simulated (`SimulationConfig.version`) so that benchmarks and physics
#: tests can show what version 5 changed on the same primaries; datasets refuse its files.
PREVIOUS_SIMULATION_VERSION = 4
#: Every version that can still be simulated, for comparisons on the same primaries (2: before delta
#: rays, the strip-level STK and the trigger; 3: before the showers' fluctuations; 4: before the
#: hadronic core's few carriers).
SIMULATABLE_VERSIONS = (2, 3, PREVIOUS_SIMULATION_VERSION, SIMULATION_VERSION)
TRIGGER_RATE_HZ = 50.0
#: Chunks of primaries simulated without one triggered event before a triggered run gives up.
MAX_CHUNKS_WITHOUT_TRIGGER = 100
#: Events of one file: all are held in memory (about 2 kB each) until the file is written; more
#: are simulated as shards (detector.production, `dampeml simulate-production`).
MAX_EVENTS_PER_FILE = 1_000_000


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. Energies are kinetic, in GeV."""

    particle: Particle
    n_events: int
    energy_min: float
    energy_max: float
    spectrum_index: float = 1.0
    mode: Literal["mc", "flight"] = "mc"
    seed: int = 0
    run_id: int | None = None  # defaults to the seed
    #: the detector's conditions (a misaligned BGO, signal scales); None: nominal for MC, drawn per
    #: run for flight. Set for MC, it makes a changed detector with truth (a transfer-learning target).
    detector: FlightConditions | None = None
    #: the simulation's physics: SIMULATION_VERSION, or an earlier one of SIMULATABLE_VERSIONS to compare
    #: with it (recorded in the file; datasets take SIMULATION_VERSION only)
    version: int = SIMULATION_VERSION
    #: from version 3, record only the events DAMPE's high-energy trigger fires on (detector.trigger),
    #: simulating primaries until n_events are recorded; False records every accepted primary (a
    #: caller that counts primaries itself, as a flight-like mission does, applies the trigger after)
    trigger: bool = True

    def __post_init__(self) -> None:
        if self.particle not in PDG:
            raise InputError(f"unknown particle {self.particle!r}: choose one of {sorted(PDG)}")
        if self.mode not in ("mc", "flight"):
            raise InputError(f"unknown mode {self.mode!r}: use 'mc' or 'flight'")
        if not 1 <= self.n_events <= MAX_EVENTS_PER_FILE:
            raise InputError(
                f"n_events must be in 1..{MAX_EVENTS_PER_FILE} per file, got {self.n_events}; "
                "simulate more as shards (simulate-production)"
            )
        if not all(math.isfinite(v) for v in (self.energy_min, self.energy_max, self.spectrum_index)):
            raise InputError(
                f"energies and spectrum index must be finite, got {self.energy_min}, {self.energy_max}, "
                f"{self.spectrum_index}"
            )
        if not 0 < self.energy_min < self.energy_max:
            raise InputError(f"need 0 < energy_min < energy_max, got {self.energy_min}, {self.energy_max}")
        if self.seed < 0:
            raise InputError(f"seed must be >= 0, got {self.seed}")
        if self.version not in SIMULATABLE_VERSIONS:
            raise InputError(
                f"simulation version {self.version} cannot be simulated: use {SIMULATION_VERSION} (the "
                f"current one) or, for comparisons, one of {SIMULATABLE_VERSIONS[:-1]} (earlier ones)"
            )


@dataclass(frozen=True)
class FlightConditions:
    """Per-run detector conditions of flight-like data: what the alignment layer must learn."""

    bgo_offset_mm: tuple[float, float]  # BGO frame shift relative to the STK (x, y)
    bgo_tilt_rad: tuple[float, float]  # extra shift per mm of depth below the BGO top
    stk_signal_scale: float
    bgo_energy_scale: float

    @classmethod
    def draw(cls, seed: int) -> FlightConditions:
        rng = np.random.default_rng([seed, 0xF11647])
        sign = rng.choice([-1.0, 1.0], 2)
        return cls(
            bgo_offset_mm=tuple(float(v) for v in sign * rng.uniform(0.8, 2.0, 2)),
            bgo_tilt_rad=tuple(float(v) for v in rng.normal(0.0, 1.5e-3, 2)),
            stk_signal_scale=float(rng.uniform(0.94, 1.06)),
            bgo_energy_scale=float(rng.uniform(0.96, 1.04)),
        )

    @classmethod
    def nominal(cls) -> FlightConditions:
        return cls((0.0, 0.0), (0.0, 0.0), 1.0, 1.0)


def simulate_chunk(
    rng: np.random.Generator, cfg: SimulationConfig, n: int, cond: FlightConditions
) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """Simulate n accepted primaries and the events recorded of them (all, or from version 3 those
    the trigger fires on): per-event arrays (STK as flat + counts), per event the candidates generated
    up to and including it (the generated count of any prefix), and the chunk's generated count."""
    charge = CHARGE[cfg.particle]
    prim, n_gen = generate_primaries(rng, n, cfg.energy_min, cfg.energy_max, cfg.spectrum_index)
    cos_t = prim.cos_theta
    traj = propagate(rng, prim, cfg.particle, charge)
    inel, z_inel = sample_interactions(rng, n, cfg.particle, cos_t)

    # BGO: the shower follows the trajectory below the STK, seen in the (misaligned) BGO frame
    ax, ay = traj.at(geo.BGO_LAYER_Z)
    depth = geo.BGO_LAYER_Z[None, :] - geo.BGO_Z_TOP
    ax_bgo = ax - cond.bgo_offset_mm[0] - cond.bgo_tilt_rad[0] * depth
    ay_bgo = ay - cond.bgo_offset_mm[1] - cond.bgo_tilt_rad[1] * depth
    e_true, _, z_bgo = bgo.simulate_bgo(
        rng, cfg.particle, charge, prim.energy, ax_bgo, ay_bgo, traj.tx_out, traj.ty_out, inel,
        gflash=cfg.version >= 3, fluctuate=cfg.version >= 4, carriers=cfg.version >= 5,
    )  # fmt: skip
    bgo_energy = bgo.readout(rng, e_true, cond.bgo_energy_scale)
    # the trigger reads the BGO only: the tracker of an event it drops is not simulated
    if cfg.version >= 3 and cfg.trigger:
        keep = np.flatnonzero(high_energy_trigger(bgo_energy))
        prim, traj = _rows(prim, keep), _rows(traj, keep)
        inel, z_inel, z_bgo, e_true, bgo_energy = (a[keep] for a in (inel, z_inel, z_bgo, e_true, bgo_energy))
        n, cos_t = len(keep), prim.cos_theta
    deposit_gev = e_true.sum(axis=(1, 2)) / 1e3

    # tracker and PSD hits from every source
    x_entry, y_entry = (c[:, 0] for c in traj.at(np.array([geo.BGO_Z_TOP])))
    parts = [
        stk.primary_hits(rng, traj.x_stk, traj.y_stk, charge, cos_t, z_inel),
        psd.primary_psd_hits(rng, traj.x_psd, traj.y_psd, charge, cos_t),
        stk.backsplash(
            rng, deposit_gev, x_entry, y_entry, planes=stk.STK_PLANES, hadronic=cfg.particle != "electron"
        ),
        stk.backsplash(
            rng, deposit_gev, x_entry, y_entry, planes=stk.PSD_PLANES, scale=stk.PSD_BACKSPLASH_SCALE
        ),
        stk.noise_clusters(rng, n),
    ]
    ev_int = np.flatnonzero(inel)
    if len(ev_int):
        # position of the primary at the interaction plane, interpolated on its trajectory
        z_all = np.concatenate([geo.PSD_Z, geo.STK_LAYER_Z])
        x_all = np.concatenate([traj.x_psd, traj.x_stk], axis=1)
        y_all = np.concatenate([traj.y_psd, traj.y_stk], axis=1)
        xi = _interp_rows(z_inel[ev_int], z_all, x_all[ev_int])
        yi = _interp_rows(z_inel[ev_int], z_all, y_all[ev_int])
        parts.append(
            stk.secondaries(
                rng, cfg.particle, prim.energy, xi, yi, z_inel[ev_int], traj.tx_out, traj.ty_out, ev_int
            )
        )
    if cfg.particle == "electron":
        parts.append(stk.preshower_pairs(rng, traj.x_stk, traj.y_stk, traj.tx_out, traj.ty_out, cos_t))
    if cfg.version >= 3:  # drawn after version 2's sources, so version 2 events stay as they were
        parts.append(delta_rays(rng, traj.x_stk, traj.y_stk, charge, cos_t, z_inel))
    hits = stk.Hits.concat(parts)
    if cfg.version >= 3:  # strip by strip; the width is a branch (the charge's single-strip rule)
        clusters = digitize_strips(rng, hits, cond.stk_signal_scale)
        for key in ("raw_signal", "eta"):
            clusters.pop(key)
        clusters["width"] = np.minimum(clusters["width"], np.iinfo(np.int8).max).astype(np.int8)
    else:
        clusters = stk.digitize(rng, hits, cond.stk_signal_scale)
    psd_e = psd.psd_energy(hits, n) * np.float32(cond.stk_signal_scale)

    theta = np.arccos(cos_t)
    out = {
        "bgo_energy": bgo_energy,
        "psd_energy": psd_e,
        "nstk": np.bincount(clusters["event"], minlength=n),
        **{f"stk_{k}": v for k, v in clusters.items() if k != "event"},
        "true_pdg": np.full(n, PDG[cfg.particle], dtype=np.int32),
        "true_energy": prim.energy,
        "true_x_top": traj.x_top,
        "true_y_top": traj.y_top,
        "true_x_bot": traj.x_bot,
        "true_y_bot": traj.y_bot,
        "true_theta": theta,
        "true_phi": np.arctan2(prim.ty, prim.tx),
        "true_inelastic": inel,
        "true_interaction_z": np.where(inel, z_inel, z_bgo if cfg.particle != "electron" else np.inf),
    }
    return out, prim.generated_through, n_gen


def _rows(obj, keep: np.ndarray):
    """A dataclass of per-event arrays (primaries, trajectories) with the rows `keep` only."""
    arrays = {f.name: getattr(obj, f.name) for f in fields(obj)}
    return replace(obj, **{k: v[keep] for k, v in arrays.items() if isinstance(v, np.ndarray)})


def _head(part: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """The first n events of a chunk, their STK clusters with them."""
    hits = int(part["nstk"][:n].sum())
    return {k: v[:hits] if k.startswith("stk_") else v[:n] for k, v in part.items()}


def _interp_rows(z: np.ndarray, z_grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row-wise linear interpolation of values (M, G) on a shared sorted grid at z (M,)."""
    order = np.argsort(z_grid)
    zg, v = z_grid[order], values[:, order]
    j = np.clip(np.searchsorted(zg, z) - 1, 0, len(zg) - 2)
    rows = np.arange(len(z))
    f = (z - zg[j]) / (zg[j + 1] - zg[j])
    return v[rows, j] + f * (v[rows, j + 1] - v[rows, j])


def simulate(cfg: SimulationConfig, progress=None) -> tuple[dict, dict]:
    """Simulate a run: (branches for the event file, metadata). `progress(k)` is told of each chunk."""
    cond = cfg.detector or (
        FlightConditions.draw(cfg.seed) if cfg.mode == "flight" else FlightConditions.nominal()
    )
    seeds = np.random.SeedSequence(cfg.seed)  # chunk i gets child i, however many chunks it takes
    triggered = cfg.version >= 3 and cfg.trigger
    chunks, n_recorded, n_generated, n_chunks = [], 0, 0, 0
    while n_recorded < cfg.n_events:
        need = cfg.n_events - n_recorded
        # a triggered run simulates whole chunks, so a shorter run stays a prefix of a longer one
        n = CHUNK_EVENTS if triggered else min(CHUNK_EVENTS, need)
        part, through, chunk_generated = simulate_chunk(
            np.random.default_rng(seeds.spawn(1)[0]), cfg, n, cond
        )
        n_chunks += 1
        recorded_here = len(part["nstk"])
        if recorded_here >= need:  # the generated count stops at the run's last recorded event
            part, chunk_generated = _head(part, need), int(through[need - 1])
        n_generated += chunk_generated
        if n_recorded == 0 and not recorded_here and n_chunks >= MAX_CHUNKS_WITHOUT_TRIGGER:
            raise InputError(
                f"the high-energy trigger fired on none of {n_chunks * CHUNK_EVENTS} simulated "
                f"{cfg.particle}s of {cfg.energy_min:g}-{cfg.energy_max:g} GeV: raise energy_min, "
                "or simulate with trigger=False (every accepted primary recorded)"
            )
        chunks.append(part)
        n_recorded += len(part["nstk"])
        if progress is not None and len(part["nstk"]):
            progress(len(part["nstk"]))
    branches = _assemble(chunks, cfg)
    run_id = cfg.seed if cfg.run_id is None else cfg.run_id
    branches["run_id"] = np.full(cfg.n_events, run_id, dtype=np.int64)
    branches["event_id"] = np.arange(cfg.n_events, dtype=np.int64)
    t_rng = np.random.default_rng([cfg.seed, 0x71AE])
    branches["event_time"] = np.cumsum(t_rng.exponential(1.0 / TRIGGER_RATE_HZ, cfg.n_events))
    if cfg.mode == "flight":
        for name in MC_ONLY:
            branches.pop(name, None)
    metadata = {
        "schema_version": SCHEMA_VERSION,
        "producer": f"dampeml {__version__}",
        "simulation_version": cfg.version,
        "mode": cfg.mode,
        "run_id": run_id,
        "n_events": cfg.n_events,
        "n_generated": n_generated,
        "generation": {
            **asdict(cfg),
            "sphere_radius_mm": geo.GENERATION_SPHERE_RADIUS,
            "sphere_centre_z_mm": geo.GENERATION_SPHERE_CENTRE_Z,
            "chunk_events": CHUNK_EVENTS,
        },
        "geometry": geo.as_metadata(),
    }
    if cfg.mode == "flight":
        # Known to the simulation only: real flight data would not carry it. Kept for
        # validation (did the alignment layer learn it?); no reconstruction code reads it.
        metadata["simulation_only_flight_conditions"] = asdict(cond)
    return branches, metadata


def recorded(branches: dict, version: int) -> np.ndarray:
    """(N,) which events simulated with `trigger=False` the detector records (from version 3, those its
    high-energy trigger fires on): for callers that count the primaries themselves."""
    bgo_energy = np.asarray(branches["bgo_energy"])
    if version < 3:
        return np.ones(len(bgo_energy), dtype=bool)
    return high_energy_trigger(bgo_energy)


def _assemble(chunks: list[dict], cfg: SimulationConfig) -> dict:
    """Concatenate chunks; STK flat arrays become jagged awkward arrays (one list per event)."""
    cat = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    counts = cat.pop("nstk")
    for k in [k for k in cat if k.startswith("stk_")]:
        cat[k] = ak.unflatten(cat[k], counts)
    return cat
