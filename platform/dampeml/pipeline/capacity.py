"""What a request costs on a cluster: production, dataset builds, training and reprocessing.

Every rate is a measurement recorded in benchmarks/README.md, named beside it, or (marked "estimated")
derived from measurements only.
Per-core rates are those of the platform's own jobs through Ray (`bench_scale.py`), so they
include Ray's overheads; the GPU figures are the chain's networks on one H200 (`bench_gpu_networks.py`)
with the CPU work around them (images, hits, shower variables) left on the node's cores. Wall time
assumes the work spreads evenly over the shape's cores (what the per-core rates measured at 1e6
events support: the cost per event is flat with size) plus the fixed start-up of one job.
"""

from __future__ import annotations

from dataclasses import dataclass

from dampeml.datasets.spec import load_spec
from dampeml.errors import InputError
from dampeml.pipeline.plan import BYTES_PER_EVENT, step_cost


@dataclass(frozen=True)
class Rate:
    """A job's marginal events/s per core through Ray and its fixed start-up (s), fitted on two sizes of
    `bench_scale.py` runs (wall = start + events / (per_core x cores)); `source` says which."""

    per_core: float
    start_s: float
    source: str


#: benchmarks/README.md, "Scale" (3-4 Dec 2026, 2 cores): a start-up and a marginal rate fitted on two sizes
#: (the runs are named beside each), checked against the runs they were not fitted on
PRODUCTION = Rate(3_552.0, 10.2, "bench_scale run 2, fitted on 1e6 and 1e7 events")
BUILD = {
    "bgo-direction": Rate(31_300.0, 12.4, "bench_scale runs 8, 9, 13: 1e7 (mean 172 s) and 1e5 (run 13)"),
    "stk-hough": Rate(25_000.0, 12.0, "bench_scale run 10, fitted on 1e5 and 1e6 events"),
}
#: reprocessing with the shipped reference (small-preset) models on CPU, one chain actor per core: fitted
#: on run 3's 1e5 events (331 s) and run 12's idle rerun of 5e5 events (1,195 s), start-ups included
REPROCESS_SMALL = Rate(231.0, 115.0, "bench_scale runs 3 (1e5) and 12 (5e5, idle)")
#: the full preset: the chain's in-process rate (38.5 events per CPU-second, benchmarks/README.md, "Faster
#: than our standard reconstruction?") times the small preset's measured Ray / in-process ratio at 1e6
#: (0.89, run 12)
REPROCESS_FULL = Rate(38.5 * 0.89, 0.0, "estimated: in-process full chain x the small preset's Ray ratio")
#: the chain's networks once per event on one H200, fp32 (benchmarks/README.md, GPU section)
GPU_NETWORKS_PER_S = {"small": 20_100.0, "full": 3_050.0}
#: the chain's CPU work around the networks, events/s per core (images, hits, shower variables: ~1 ms)
CHAIN_CPU_WORK_PER_CORE = 1_000.0
#: bytes per event: simulated ROOT files (protons 10 GeV-100 TeV) and reprocessing outputs
SIMULATED_BYTES = 1_239
REPROCESSED_BYTES = 104


@dataclass(frozen=True)
class Shape:
    """A cluster: CPU nodes and GPU nodes (whose cores also count)."""

    cpu_nodes: int = 1
    cores_per_node: int = 2
    gpu_nodes: int = 0
    gpus_per_node: int = 1
    cores_per_gpu_node: int = 16

    def __post_init__(self) -> None:
        for name in ("cpu_nodes", "cores_per_node", "gpu_nodes", "gpus_per_node", "cores_per_gpu_node"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.cores == 0:
            raise InputError("the cluster has no cores: give --cpu-nodes and --cores-per-node")

    @property
    def cores(self) -> int:
        return self.cpu_nodes * self.cores_per_node + self.gpu_nodes * self.cores_per_gpu_node

    @property
    def gpus(self) -> int:
        return self.gpu_nodes * self.gpus_per_node


@dataclass(frozen=True)
class StageCost:
    stage: str
    events: float
    core_hours: float
    gpu_hours: float
    wall_hours: float
    storage_tb: float
    basis: str


def predicted_wall_s(rate: Rate, events: float, cores: int) -> float:
    """Wall time of one job of `events` on `cores` cores at `rate`."""
    return rate.start_s + events / (rate.per_core * cores)


def _cpu_stage(stage: str, events: float, rate: Rate, shape: Shape, bytes_per_event: float) -> StageCost:
    wall = predicted_wall_s(rate, events, shape.cores)
    core_hours = wall * shape.cores / 3600
    return StageCost(
        stage, events, core_hours, 0.0, wall / 3600, events * bytes_per_event / 1e12, rate.source
    )


def reprocessing_cost(events: float, shape: Shape, preset: str) -> StageCost:
    """CPU only: the measured per-core rate. With GPUs: the networks on the GPUs, the rest on the
    cores; the slower side sets the pace (and the idle side still counts its hours)."""
    if preset not in GPU_NETWORKS_PER_S:
        raise InputError(f"--preset must be one of {sorted(GPU_NETWORKS_PER_S)}, got {preset!r}")
    if shape.gpus == 0:
        rate = REPROCESS_SMALL if preset == "small" else REPROCESS_FULL
        return _cpu_stage("reprocessing", events, rate, shape, REPROCESSED_BYTES)
    per_s = min(GPU_NETWORKS_PER_S[preset] * shape.gpus, CHAIN_CPU_WORK_PER_CORE * shape.cores)
    wall = events / per_s
    basis = "GPU networks measured (ONNX via PyTorch), CPU work measured"
    return StageCost(
        "reprocessing", events, wall * shape.cores / 3600, wall * shape.gpus / 3600, wall / 3600,
        events * REPROCESSED_BYTES / 1e12, basis,
    )  # fmt: skip


def capacity_plan(
    shape: Shape,
    produce: float = 0.0,
    build: float = 0.0,
    reprocess: float = 0.0,
    preset: str = "small",
    build_kind: str = "bgo-direction",
) -> list[StageCost]:
    """The stages a request names (events of each; 0 leaves a stage out); the builds' datasets of
    `build_kind`."""
    rows = []
    if produce:
        rows.append(_cpu_stage("production", produce, PRODUCTION, shape, SIMULATED_BYTES))
    if build:
        if build_kind not in BUILD:
            raise InputError(
                f"no measured build rate for {build_kind!r} datasets: use one of {sorted(BUILD)}"
            )
        rate, size = BUILD[build_kind], BYTES_PER_EVENT[build_kind]
        rows.append(_cpu_stage(f"dataset build ({build_kind})", build, rate, shape, size))
    if reprocess:
        rows.append(reprocessing_cost(reprocess, shape, preset))
    return rows


def training_costs(recipe) -> list[StageCost]:
    """One row per training step of a resolved recipe (pipeline.plan's measured training rates); steps
    run one after another, so their wall times add."""
    rows = []
    for name, step in recipe.steps.items():
        cost = step_cost(step, load_spec(recipe.dataset_paths[name]))
        hours = cost.hours or 0.0
        t = step.train
        rows.append(
            StageCost(
                f"training {name} ({step.preset})", float(cost.events or 0),
                hours * t.workers * t.cpus_per_worker, cost.gpu_hours, hours, (cost.storage_gb or 0.0) / 1e3,
                cost.basis,
            )
        )  # fmt: skip
    return rows


def format_plan(rows: list[StageCost], shape: Shape) -> list[str]:
    """A Markdown table, and the totals."""
    lines = [
        f"cluster: {shape.cores} cores ({shape.cpu_nodes} x {shape.cores_per_node} + {shape.gpu_nodes} GPU "
        f"nodes x {shape.cores_per_gpu_node}), {shape.gpus} GPUs",
        "",
        "| stage | events | core-hours | GPU-hours | wall (h) | storage (TB) | rates |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.stage} | {r.events:.3g} | {r.core_hours:,.3g} | {r.gpu_hours:,.3g} | {r.wall_hours:,.3g} "
            f"| {r.storage_tb:.3g} | {r.basis} |"
        )
    core, gpu = sum(r.core_hours for r in rows), sum(r.gpu_hours for r in rows)
    wall, storage = sum(r.wall_hours for r in rows), sum(r.storage_tb for r in rows)
    cells = f"{core:,.3g} | {gpu:,.3g} | {wall:,.3g} | {storage:.3g}"
    lines.append(f"| total, one stage after another | | {cells} | |")
    return lines
