"""Large simulation requests as independent, seeded shards on Ray: restartable, never duplicated.

A `ProductionRequest` (particle, total events, energy range, spectrum, mode, base seed, events per
shard, output directory) is cut into shards of `events_per_shard` events (the last one takes the
remainder). Shard `i` is one Ray task (`num_cpus=1`) that simulates and writes one ROOT file,
`{particle}_{mode}_s{base_seed}_{i:05d}.root`. Everything about a shard follows from the request
and `i`, so a shard made twice is the same file twice:

- seed: `shard_seed(base_seed, i)`, the `i`-th child of `numpy.random.SeedSequence(base_seed)`
  (what `SeedSequence(base_seed).spawn(n)[i]` gives), reduced to a 63-bit integer. Children of
  one SeedSequence are independent streams by design, unlike `base_seed + i`, whose streams
  would overlap with those of the neighbouring base seeds.
- run_id: `base_seed * SHARDS_PER_SEED + i`, readable and unique within one base seed. Runs of
  productions of other particles with the same base seed share run ids: give each production
  its own base seed when the events will be mixed.

Exactly once: `write_event_file` writes under a temporary name and renames, so a file under the
final name is always whole; a retried or rerun shard rewrites identical content. Before
submitting, the driver checks each existing shard file (readable ROOT, not truncated, the
requested number of events, made by the same generation parameters) and skips complete ones;
corrupt or short ones are made again. A file made by different parameters (another energy range,
say) stops the production before anything runs: that output directory belongs to another request.
At the end `production.json` (the manifest: request, shards with seed, run_id, n_events and
n_generated, totals) is rewritten atomically. The output directory must be visible from every
worker (one node or a shared filesystem).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import ray
import uproot
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dampeml import __version__
from dampeml.detector.simulation import SIMULATION_VERSION, SimulationConfig, simulate
from dampeml.errors import InputError, JobError
from dampeml.io.root_reader import EventFileError, inspect_file
from dampeml.io.root_writer import write_event_file
from dampeml.security import check_job_paths
from dampeml.storage import atomic_file

logger = logging.getLogger(__name__)

SHARDS_PER_SEED = 100_000  # shard index < this: 5-digit file index, and run_id stays unique
MANIFEST = "production.json"
MANIFEST_FORMAT = "dampeml-production/1"
SEED_RULE = (
    "seed = SeedSequence(base_seed, spawn_key=(index,)).generate_state(1, uint64)[0] >> 1; "
    f"run_id = base_seed * {SHARDS_PER_SEED} + index"
)
_INT64_MAX = np.iinfo(np.int64).max
# generation parameters that must agree for an existing file to count as this request's shard
_SAME_GENERATION = ("particle", "mode", "energy_min", "energy_max", "spectrum_index", "seed", "run_id")


class ProductionError(JobError):
    """Some shards could not be made; the others are on disk and in the manifest. Rerun to retry."""


def shard_seed(base_seed: int, index: int) -> int:
    """Seed of shard `index`: child `index` of SeedSequence(base_seed), as a 63-bit integer."""
    child = np.random.SeedSequence(base_seed, spawn_key=(index,))
    return int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class Shard:
    index: int
    path: Path
    seed: int
    run_id: int
    n_events: int


@dataclass(frozen=True)
class ProductionRequest:
    """What to simulate, in total. Energies are kinetic, in GeV."""

    particle: str
    n_events: int
    energy_min: float
    energy_max: float
    out_dir: str
    spectrum_index: float = 1.0
    mode: str = "mc"
    base_seed: int = 0
    events_per_shard: int = 2000

    def __post_init__(self) -> None:

        check_job_paths(out=self.out_dir)  # StorageNotAllowedError before any shard runs
        # absolute: the shard tasks may run in another working directory
        object.__setattr__(self, "out_dir", os.path.abspath(os.fspath(self.out_dir)))
        if self.events_per_shard < 1:
            raise InputError(f"events_per_shard must be >= 1, got {self.events_per_shard}")
        if self.n_events < 1:
            raise InputError(f"n_events must be >= 1, got {self.n_events}")
        if self.n_shards > SHARDS_PER_SEED:
            raise InputError(
                f"{self.n_shards} shards: at most {SHARDS_PER_SEED} per production; raise events_per_shard"
            )
        if self.base_seed < 0 or self.base_seed * SHARDS_PER_SEED + SHARDS_PER_SEED - 1 > _INT64_MAX:
            top = _INT64_MAX // SHARDS_PER_SEED - 1
            raise InputError(f"base_seed must be in 0..{top}, got {self.base_seed}")
        self.config(self.shard(0))  # validates particle, mode, energies

    @property
    def n_shards(self) -> int:
        return -(-self.n_events // self.events_per_shard)

    def shard(self, index: int) -> Shard:
        if not 0 <= index < self.n_shards:
            raise IndexError(f"shard {index} of a {self.n_shards}-shard production")
        n = min(self.events_per_shard, self.n_events - index * self.events_per_shard)
        name = f"{self.particle}_{self.mode}_s{self.base_seed}_{index:05d}.root"
        return Shard(
            index,
            Path(self.out_dir) / name,
            shard_seed(self.base_seed, index),
            self.base_seed * SHARDS_PER_SEED + index,
            n,
        )

    def shards(self) -> list[Shard]:
        return [self.shard(i) for i in range(self.n_shards)]

    def config(self, shard: Shard) -> SimulationConfig:
        return SimulationConfig(
            particle=self.particle,  # type: ignore[arg-type]
            n_events=shard.n_events,
            energy_min=self.energy_min,
            energy_max=self.energy_max,
            spectrum_index=self.spectrum_index,
            mode=self.mode,  # type: ignore[arg-type]
            seed=shard.seed,
            run_id=shard.run_id,
        )


@dataclass(frozen=True)
class ShardState:
    """What is on disk for a shard: complete (skip), absent or broken (make), or a conflict."""

    shard: Shard
    status: str  # 'complete' | 'missing' | 'remake' | 'conflict'
    reason: str = ""
    n_generated: int = 0


def check_shard(request: ProductionRequest, shard: Shard) -> ShardState:
    """Is the shard's file on disk complete and this request's?"""
    path = shard.path
    if not path.exists():
        return ShardState(shard, "missing")
    try:
        with uproot.open(path) as f:  # the header records where the file ends: catches truncation
            end = f.file.fEND
        size = path.stat().st_size
        if size < end:
            return ShardState(shard, "remake", f"truncated ({size} of {end} bytes)")
        info = inspect_file(path)
    except EventFileError as exc:
        return ShardState(shard, "remake", exc.problem)
    except Exception as exc:  # uproot's many error types for junk files
        return ShardState(shard, "remake", f"not a readable ROOT file ({type(exc).__name__})")
    generation = info.metadata.get("generation") or {}
    want = asdict(request.config(shard))
    differ = [k for k in _SAME_GENERATION if generation.get(k) != want[k]]
    if differ:
        k = differ[0]
        return ShardState(
            shard,
            "conflict",
            f"{path} was made with {k}={generation.get(k)!r}, this request "
            f"has {k}={want[k]!r}: write this production to another directory",
        )
    version = info.metadata.get("simulation_version")
    if version != SIMULATION_VERSION:
        return ShardState(
            shard,
            "conflict",
            f"{path} was made with simulation version {version}, this one is {SIMULATION_VERSION} "
            "(docs/simulation.md): write this production to another directory",
        )
    if info.n_events != shard.n_events:
        return ShardState(shard, "remake", f"{info.n_events} events instead of {shard.n_events}")
    return ShardState(shard, "complete", n_generated=int(info.metadata.get("n_generated", 0)))


@ray.remote(num_cpus=1)
def make_shard(request: ProductionRequest, shard: Shard) -> dict:
    """Ray task: simulate one shard and write its file (atomically). Returns its manifest entry."""
    t0 = time.perf_counter()
    branches, metadata = simulate(request.config(shard))
    write_event_file(shard.path, branches, metadata)
    return {**_entry(shard, int(metadata["n_generated"])), "seconds": round(time.perf_counter() - t0, 3)}


def _entry(shard: Shard, n_generated: int) -> dict:
    return {
        "index": shard.index,
        "file": shard.path.name,
        "seed": shard.seed,
        "run_id": shard.run_id,
        "n_events": shard.n_events,
        "n_generated": n_generated,
    }


@dataclass
class ProductionSummary:
    n_shards: int
    made: list[int] = field(default_factory=list)  # shard indices made by this run
    remade: dict[int, str] = field(default_factory=dict)  # made again, with what was wrong before
    skipped: list[int] = field(default_factory=list)  # complete already
    failed: dict[int, str] = field(default_factory=dict)
    n_events: int = 0  # in complete shards
    n_generated: int = 0  # primaries generated for them (acceptance = n_events / n_generated)
    manifest: Path | None = None
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.failed and len(self.made) + len(self.skipped) == self.n_shards

    def lines(self) -> list[str]:
        acc = self.n_events / self.n_generated if self.n_generated else 0.0
        out = [
            f"shards: {self.n_shards} ({len(self.made)} made, of which {len(self.remade)} remade; "
            f"{len(self.skipped)} already complete; {len(self.failed)} failed)",
            f"events: {self.n_events} accepted of {self.n_generated} generated (acceptance {acc:.3%})",
            f"manifest: {self.manifest}  ({self.seconds:.1f} s)",
        ]
        out += [f"remade shard {i}: was {why}" for i, why in sorted(self.remade.items())]
        out += [f"FAILED shard {i}: {why}" for i, why in sorted(self.failed.items())]
        return out


def run_production(
    request: ProductionRequest,
    progress: bool = True,
    log: Callable[[str], None] | None = logger.info,
    ray_address: str | None = None,
    num_cpus: int | None = None,
) -> ProductionSummary:
    """Make the shards of `request` that are not complete on disk, then write the manifest.

    Ray is started (`dampeml.runtime.init_ray(ray_address, num_cpus)`) only if there is work and it
    is not running yet. Raises `ValueError`
    before doing anything if the output directory holds shards of another request, and
    `ProductionError` after the run if some shards failed (the rest are kept: rerun to finish).
    """
    t0 = time.perf_counter()
    out_dir = Path(request.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = request.shards()
    with ThreadPoolExecutor(max_workers=8) as pool:
        states = list(pool.map(lambda s: check_shard(request, s), shards))
    conflicts = [s for s in states if s.status == "conflict"]
    if conflicts:
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise InputError(conflicts[0].reason + more)

    summary = ProductionSummary(n_shards=len(shards))
    entries: dict[int, dict] = {}
    for st in states:
        if st.status == "complete":
            summary.skipped.append(st.shard.index)
            entries[st.shard.index] = _entry(st.shard, st.n_generated)
        elif st.status == "remake":
            summary.remade[st.shard.index] = st.reason
    todo = [st.shard for st in states if st.status != "complete"]

    if todo:
        if not ray.is_initialized():
            from dampeml.runtime import init_ray

            init_ray(ray_address, num_cpus)
        pending = {make_shard.remote(request, s): s for s in todo}
        with _progress(progress, sum(s.n_events for s in todo), f"simulating {request.particle}") as advance:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                shard = pending.pop(done[0])
                try:
                    entries[shard.index] = ray.get(done[0])
                    summary.made.append(shard.index)
                except Exception as exc:  # keep the other shards going; report at the end
                    summary.failed[shard.index] = f"{type(exc).__name__}: {str(exc).splitlines()[-1]}"
                advance(shard.n_events)
    for i in summary.failed:
        summary.remade.pop(i, None)
    summary.made.sort()

    listed = [entries[i] for i in sorted(entries)]
    summary.n_events = sum(e["n_events"] for e in listed)
    summary.n_generated = sum(e["n_generated"] for e in listed)
    summary.manifest = write_manifest(request, listed, complete=not summary.failed)
    summary.seconds = time.perf_counter() - t0
    if log is not None:
        for line in summary.lines():
            log(line)
    if summary.failed:
        raise ProductionError(
            f"{len(summary.failed)} of {len(shards)} shards failed, e.g. shard "
            f"{min(summary.failed)}: {summary.failed[min(summary.failed)]}; "
            "the others are on disk: rerun the same command to finish"
        )
    return summary


def write_manifest(request: ProductionRequest, shards: list[dict], complete: bool) -> Path:
    """Write `production.json` atomically (temporary file + rename) and return its path."""
    out = Path(request.out_dir) / MANIFEST
    doc = {
        "format": MANIFEST_FORMAT,
        "producer": f"dampeml {__version__}",
        "simulation_version": SIMULATION_VERSION,
        "updated_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "request": asdict(request),
        "seed_rule": SEED_RULE,
        "complete": complete and len(shards) == request.n_shards,
        "n_shards": request.n_shards,
        "n_events": sum(s["n_events"] for s in shards),
        "n_generated": sum(s["n_generated"] for s in shards),
        "shards": [{k: v for k, v in s.items() if k != "seconds"} for s in shards],
    }
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    return out


@contextlib.contextmanager
def _progress(enabled: bool, total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over events (or nothing); yields `advance(n)`."""
    if not enabled:
        yield lambda n: None
        return

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
