"""Work units: the deterministic pieces a dataset build is cut into.

A unit is an event range of one file, or one seeded chunk of in-pipeline simulation.
Its id is derived from what it reads, so a resumed build recognises finished units,
and every unit writes one shard per split plus a commit marker.
"""

from __future__ import annotations

import glob as globmod
import hashlib
from dataclasses import asdict, dataclass

import numpy as np

from dampeml.datasets.spec import DatasetSpec, FileSource, SimulationSource
from dampeml.detector.simulation import SIMULATION_VERSION
from dampeml.io.root_reader import EventFileError, inspect_file
from dampeml.io.schema import PDG

PARTICLES = tuple(PDG)  # index = the particle label of datasets: proton 0, helium 1, electron 2


@dataclass(frozen=True)
class WorkUnit:
    unit_id: str
    source: str  # 'file' or 'simulation'
    n_events: int
    path: str = ""
    entry_start: int = 0
    particle: str = ""  # simulation: what to simulate; files: the file's particle when known
    energy_min: float = 0.0
    energy_max: float = 0.0
    spectrum_index: float = 1.0
    seed: int = 0
    run_id: int = 0
    mode: str = "mc"
    #: simulation of a changed detector: FlightConditions' fields in order (offset x, y, tilt x, y,
    #: STK scale, BGO scale); empty: nominal
    detector: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BadFile:
    path: str
    reason: str


def _other_version(version: object) -> str:
    return (
        f"simulated with simulation version {version}; datasets are built from version "
        f"{SIMULATION_VERSION} events (docs/simulation.md): simulate it again with this version"
    )


def simulation_run_id(base_seed: int, particle: str, chunk: int) -> int:
    """Unique run number per simulated chunk: identity (run_id, event_id) never repeats."""
    return (base_seed * 10 + PARTICLES.index(particle)) * 100_000 + chunk


def plan_units(spec: DatasetSpec, limit_events: int | None = None) -> tuple[list[WorkUnit], list[BadFile]]:
    """All units of a spec in a fixed order, and the input files that cannot be read at all."""
    units: list[WorkUnit] = []
    bad: list[BadFile] = []
    for src in spec.sources:
        if isinstance(src, SimulationSource):
            d = src.detector
            detector = (
                ()
                if d is None
                else (*d.bgo_offset_mm, *d.bgo_tilt_rad, d.stk_signal_scale, d.bgo_energy_scale)
            )
            for particle, r in src.particles.items():
                for chunk, start in enumerate(range(0, r.events, src.events_per_unit)):
                    n = min(src.events_per_unit, r.events - start)
                    seed = int(
                        np.random.SeedSequence([src.seed, PARTICLES.index(particle), chunk]).generate_state(
                            1
                        )[0]
                    )
                    units.append(
                        WorkUnit(
                            unit_id=f"sim-{src.seed}-{particle}-{chunk:05d}",
                            source="simulation",
                            n_events=n,
                            particle=particle,
                            energy_min=r.energy_min,
                            energy_max=r.energy_max,
                            spectrum_index=r.spectrum_index,
                            seed=seed,
                            mode=src.mode,
                            run_id=simulation_run_id(src.seed, particle, chunk),
                            detector=detector,
                        )
                    )
        elif isinstance(src, FileSource):
            paths = sorted(globmod.glob(src.glob))
            if not paths:
                raise FileNotFoundError(f"source glob {src.glob!r} matches no file")
            for path in paths:
                try:
                    info = inspect_file(path)
                except EventFileError as exc:
                    bad.append(BadFile(path, exc.problem))
                    continue
                version = info.metadata.get("simulation_version")
                if version is not None and version != SIMULATION_VERSION:  # flight data has none
                    bad.append(BadFile(path, _other_version(version)))
                    continue
                tag = hashlib.sha1(path.encode()).hexdigest()[:10]
                particle = info.metadata.get("generation", {}).get("particle", "")
                for start in range(0, info.n_events, src.events_per_unit):
                    n = min(src.events_per_unit, info.n_events - start)
                    units.append(
                        WorkUnit(
                            unit_id=f"file-{tag}-{start:09d}",
                            source="file",
                            n_events=n,
                            path=path,
                            entry_start=start,
                            particle=particle,
                            mode=info.mode,
                        )
                    )
    if limit_events is not None:
        units = _limit(units, limit_events)
    return units, bad


def _limit(units: list[WorkUnit], limit: int) -> list[WorkUnit]:
    """Keep `limit` events, spread over the units (hence particles) in proportion: a faithful small mix.

    Largest remainders, so the kept events add up to `limit` exactly; rounding each unit on its own
    kept nothing at all when there were more units than events to keep.
    """
    total = sum(u.n_events for u in units)
    if limit >= total:
        return units
    share = np.array([u.n_events for u in units], dtype=np.float64) * limit / total
    keep = np.floor(share).astype(np.int64)
    extra = np.argsort(-(share - keep), kind="stable")[: limit - int(keep.sum())]
    keep[extra] += 1
    kept = zip(units, keep.tolist(), strict=True)
    return [WorkUnit(**{**u.to_dict(), "n_events": n}) for u, n in kept if n > 0]


def planned_particle_counts(units: list[WorkUnit]) -> dict[str, int]:
    """Events per particle before selection (for the electron-fraction downsampling)."""
    counts: dict[str, int] = {}
    for u in units:
        counts[u.particle or "unknown"] = counts.get(u.particle or "unknown", 0) + u.n_events
    return counts
