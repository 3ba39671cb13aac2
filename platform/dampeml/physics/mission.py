"""A flight-like run of known composition: what a flux measured on it must give back.

A mission file (YAML) names components (particle, a power-law flux normalised at 100 GeV, its index,
its energy range), a live time, a number of runs and a seed. Per run and component, the number of
primaries crossing the generation sphere in the run's live time is drawn (Poisson, mean: the
generation's geometric factor x live time x the flux integrated over the range); those of them the
instrument accepts are simulated (the accepted count is drawn from those candidates' own geometry, so
the ratio accepted / generated is the instrument's, not a guess). The components of a run share the
run's detector conditions (drawn per run, as flight data) and are mixed in a seeded order into one
flight-like file, `run_<run>.root`, of the events the trigger records, without truth. The truth
(particle, true energy and true track of every accepted primary; `recorded` and the event id where the
file holds it, -1 where the trigger did not fire) goes to `truth/run_<run>.parquet`, sealed:
`mission.json` records every file's sha256, and nothing but a closure test reads the truth (the flux
job never does).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from dampeml import __version__
from dampeml.detector.generator import GENERATION_GEOMETRIC_FACTOR_M2SR, count_accepted
from dampeml.detector.simulation import FlightConditions, SimulationConfig, recorded, simulate
from dampeml.errors import InputError
from dampeml.io.root_writer import write_event_file
from dampeml.io.schema import MC_ONLY, PDG
from dampeml.storage import atomic_file

MANIFEST = "mission.json"
TRUTH_DIR = "truth"
#: the energy at which a component's flux is given (GeV)
E0_GEV = 100.0
TRUTH_BRANCHES = ("true_pdg", "true_energy", "true_x_top", "true_y_top", "true_x_bot", "true_y_bot")


class MissionError(InputError):
    """A mission file that cannot be simulated; the message names the field."""


class Component(BaseModel):
    """One species: dN/dE = flux_at_100gev x (E / 100 GeV)^-index per (m2 s sr GeV), E kinetic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: proton, helium or electron
    particle: Literal["proton", "helium", "electron"]
    #: the flux at 100 GeV kinetic energy, per (m2 s sr GeV)
    flux_at_100gev: float = Field(gt=0)
    #: spectral index (dN/dE ~ E^-index)
    index: float = Field(gt=1)
    #: lowest kinetic energy simulated (GeV)
    energy_min: float = Field(gt=0)
    #: highest kinetic energy simulated (GeV)
    energy_max: float = Field(gt=0)

    @model_validator(mode="after")
    def _range(self) -> Component:
        if self.energy_max <= self.energy_min:
            raise ValueError("energy_max must exceed energy_min")
        return self

    def integral(self, lo: float | None = None, hi: float | None = None) -> float:
        """The flux integrated over [lo, hi] within the range (per m2 s sr)."""
        lo, hi = max(lo or self.energy_min, self.energy_min), min(hi or self.energy_max, self.energy_max)
        if hi <= lo:
            return 0.0
        g = 1.0 - self.index
        return self.flux_at_100gev * E0_GEV / g * ((hi / E0_GEV) ** g - (lo / E0_GEV) ** g)


class Mission(BaseModel):
    """A flight-like run of known composition (module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the mission's name (lower case, digits, `.`, `_`, `-`)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    #: free text
    description: str = ""
    #: total live time (s), shared equally by the runs
    live_time_s: float = Field(gt=0)
    #: flight-like runs (files), each with its own detector conditions
    runs: int = Field(1, ge=1)
    #: base seed: everything follows from it
    seed: int = Field(0, ge=0)
    #: flight: each run draws its detector conditions (misalignment, energy and signal scales) as
    #: flight-like runs do; nominal: the MC detector (a closure of the analysis alone)
    detector: Literal["flight", "nominal"] = "flight"
    #: the species
    components: list[Component] = Field(min_length=1)

    def expected_candidates(self, c: Component) -> float:
        """Mean number of primaries of `c` crossing the generation sphere in one run."""
        return GENERATION_GEOMETRIC_FACTOR_M2SR * self.live_time_s / self.runs * c.integral()

    def injected_flux(self, particle: str, bins_gev) -> list[float]:
        """The mean injected flux of `particle` in each bin of edges `bins_gev` (per m2 s sr GeV)."""
        edges = [float(e) for e in bins_gev]
        return [sum(c.integral(lo, hi) for c in self.components if c.particle == particle) / (hi - lo)
                for lo, hi in zip(edges[:-1], edges[1:], strict=True)]  # fmt: skip


def load_mission(path: str | Path) -> Mission:
    """The mission in `path`: a mission file (YAML), or a simulated mission's folder or its `mission.json`
    (the mission it was simulated from); MissionError naming the file and the field."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise MissionError(f"{path}: no such mission file")
    try:
        raw = yaml.safe_load(path.read_text())  # JSON is YAML
        return Mission.model_validate(raw["mission"] if path.name == MANIFEST else raw)
    except Exception as exc:  # pydantic's or YAML's error, no "mission": one message naming the file
        raise MissionError(f"{path}: {exc}") from None


def _concat(parts: list[dict]) -> dict:
    return {
        k: ak.concatenate([p[k] for p in parts])
        if isinstance(parts[0][k], ak.Array)
        else np.concatenate([p[k] for p in parts])
        for k in parts[0]
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def simulate_run(mission: Mission, run: int, out: Path) -> dict:
    """Simulate run `run` of `mission` into `out` (flight file and sealed truth); its manifest entry."""
    seeds = np.random.SeedSequence([mission.seed, run]).spawn(len(mission.components) + 1)
    run_id = mission.seed * 1000 + run
    conditions = FlightConditions.draw(run_id) if mission.detector == "flight" else FlightConditions.nominal()
    parts, unrecorded, generated = [], [], {}
    for c, seed in zip(mission.components, seeds[:-1], strict=True):
        rng = np.random.default_rng(seed)
        n_candidates = int(rng.poisson(mission.expected_candidates(c)))
        n = count_accepted(rng, n_candidates)
        generated[c.particle] = {"candidates": n_candidates, "accepted": n}
        if n:
            sim_seed = int(seed.generate_state(1)[0])
            cfg = SimulationConfig(
                c.particle, n, c.energy_min, c.energy_max, c.index, mode="mc", seed=sim_seed, trigger=False
            )
            cfg = dataclasses.replace(cfg, run_id=run_id, detector=conditions)
            every = simulate(cfg)[0]
            fired = recorded(every, cfg.version)  # the accepted primaries the trigger keeps
            generated[c.particle]["recorded"] = int(fired.sum())
            parts.append({k: v[fired] for k, v in every.items()})
            unrecorded.append({k: np.asarray(every[k])[~fired] for k in TRUTH_BRANCHES})
    if not parts:
        raise MissionError(f"mission {mission.name}: run {run} holds no event; give a longer live_time_s")
    events = _concat(parts)
    n = len(events["true_pdg"])
    order = np.random.default_rng(seeds[-1]).permutation(n)
    events = {k: v[order] for k, v in events.items()}
    events["event_id"] = np.arange(n, dtype=np.int64)
    events["run_id"] = np.full(n, run_id, dtype=np.int64)
    live = mission.live_time_s / mission.runs
    events["event_time"] = np.sort(np.random.default_rng(seeds[-1]).uniform(0.0, live, n))
    missed = _concat(unrecorded)
    n_missed = len(missed["true_pdg"])
    truth = pa.concat_tables([
        pa.table({"run_id": events["run_id"], "event_id": events["event_id"], "recorded": np.ones(n, bool),
                  **{k: np.asarray(events[k]) for k in TRUTH_BRANCHES}}),
        pa.table({"run_id": np.full(n_missed, run_id, dtype=np.int64), "event_id": np.full(n_missed, -1),
                  "recorded": np.zeros(n_missed, bool), **missed}),
    ])  # fmt: skip
    for name in MC_ONLY:
        events.pop(name, None)
    metadata = {
        "mode": "flight",
        "producer": f"dampeml {__version__}",
        "run_id": run_id,
        "n_events": n,
        "live_time_s": live,
        "mission": mission.name,
        "simulation_only_flight_conditions": asdict(conditions),
    }
    flight = write_event_file(out / f"run_{run_id}.root", events, metadata)
    truth_path = out / TRUTH_DIR / f"run_{run_id}.parquet"
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(truth_path) as tmp:
        pq.write_table(truth, tmp)
    return {
        "run_id": run_id,
        "file": flight.name,
        "sha256": _sha256(flight),
        "truth": f"{TRUTH_DIR}/{truth_path.name}",
        "truth_sha256": _sha256(truth_path),
        "n_events": n,
        "live_time_s": live,
        "generated": generated,
    }


def simulate_mission(mission: Mission, out: str | Path) -> Path:
    """Every run of `mission` into `out`, then `mission.json` (the mission, its runs, their hashes)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [simulate_run(mission, r, out) for r in range(mission.runs)]
    manifest = {"mission": mission.model_dump(mode="json"), "runs": runs, "pdg": PDG,
                "generation_geometric_factor_m2sr": GENERATION_GEOMETRIC_FACTOR_M2SR}  # fmt: skip
    path = out / MANIFEST
    with atomic_file(path) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=2))
    return path


def read_truth(folder: str | Path) -> pa.Table:
    """The sealed truth of a mission folder, checked against `mission.json` (closure tests only)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    tables = []
    for run in manifest["runs"]:
        path = folder / run["truth"]
        if _sha256(path) != run["truth_sha256"]:
            raise MissionError(f"{path}: its sha256 differs from {folder / MANIFEST}; the truth was changed")
        tables.append(pq.read_table(path))
    return pa.concat_tables(tables)
