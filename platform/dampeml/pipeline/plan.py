"""What a recipe step costs before it runs: events, storage and training hours, from measured rates.

The rates are measurements recorded in benchmarks/README.md, not guesses:
- stored bytes per event of each dataset kind (small-spec builds, zstd Parquet);
- training samples per second on one CPU core (tf-keras `fit`, batch 32, the 2-core Xeon of
  that page) per network family and preset;
- inference events per second of each family's graph on one H200 GPU (ONNX through PyTorch).
  A training step costs about three forward passes (forward, and a backward of about twice
  its cost): GPU training rates are that estimate, and the plan says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from dampeml.datasets.spec import DatasetSpec, SimulationSource
from dampeml.models.catalog import get_network
from dampeml.pipeline.recipe import Step

#: bytes per stored event (benchmarks/README.md, "Bytes per event on disk"; largest of a kind)
BYTES_PER_EVENT = {
    "bgo-direction": 166,
    "stk-hough": 453,
    "inelastic-hough": 459,
    "electron-proton": 330,
    "bgo-energy": 334,  # the electron-proton columns (the true energy is stored for every MC kind)
    "inelastic-raw-stk": 531,
}
#: training samples/s on one CPU core, (family, preset) (benchmarks/README.md, "Training");
#: the full Hough figure is the slower of the two Hough networks measured
CPU_SAMPLES_PER_S = {
    ("bgo_cnn", "small"): 1343,
    ("bgo_cnn", "full"): 243,
    ("hough_cnn", "small"): 154,
    ("hough_cnn", "full"): 4.5,
    ("raw_stk_cnn", "small"): 90,
    ("raw_stk_cnn", "full"): 15.8,
    ("hamf", "small"): 1414,
    ("hamf", "full"): 268,
}
#: inference events/s on one H200, fp32 (benchmarks/README.md, "The chain's networks on a GPU")
GPU_INFERENCE_PER_S = {
    ("bgo_cnn", "small"): 298_000,
    ("bgo_cnn", "full"): 297_000,
    ("hough_cnn", "small"): 100_600,
    ("hough_cnn", "full"): 10_200,
    ("raw_stk_cnn", "small"): 112_800,
    ("raw_stk_cnn", "full"): 43_400,
    ("hamf", "small"): 749_000,
    ("hamf", "full"): 514_000,
}
#: a training step's cost in forward passes (an estimate: backward ~ twice the forward)
TRAIN_OVER_INFERENCE = 3.0


@dataclass(frozen=True)
class StepCost:
    events: int | None  # events the build reads (None: file sources, known once listed)
    storage_gb: float | None
    hours: float | None  # wall time of the training at the step's workers
    gpu_hours: float
    basis: str  # which rate the hours come from


def spec_events(spec: DatasetSpec, limit_events: int | None) -> int | None:
    """Events a build of `spec` reads: the simulation sources' planned events, capped by the limit."""
    if not all(isinstance(s, SimulationSource) for s in spec.sources):
        return limit_events
    total = sum(r.events for s in spec.sources for r in s.particles.values())
    return min(total, limit_events) if limit_events else total


def step_cost(step: Step, spec: DatasetSpec) -> StepCost:
    """Events, storage and training hours of one step (see the module docstring for the rates)."""
    events = spec_events(spec, step.limit_events)
    storage = events * BYTES_PER_EVENT[spec.kind] / 1e9 if events else None
    key = (get_network(step.network).family, step.preset)
    t = step.train
    if t.gpus_per_worker > 0:
        rate = GPU_INFERENCE_PER_S[key] / TRAIN_OVER_INFERENCE * t.gpus_per_worker
        basis = "GPU, estimated from measured inference"
    else:
        rate = CPU_SAMPLES_PER_S[key] * t.cpus_per_worker
        basis = "CPU, measured"
    samples = (t.steps_per_epoch * t.batch_per_worker * t.workers if t.steps_per_epoch else None) or (
        events * spec.split.train if events else None
    )
    hours = samples * t.epochs / (rate * t.workers) / 3600 if samples else None
    gpu_hours = (hours or 0.0) * t.workers * t.gpus_per_worker
    return StepCost(events, storage, hours, gpu_hours, basis)


def describe(cost: StepCost) -> str:
    """One line: '2.5e+07 events, 4.2 GB, ~12 h (48 GPU-h; GPU, estimated ...)'."""
    events = f"{cost.events:.3g} events" if cost.events else "events of the files"
    storage = f", {cost.storage_gb:.3g} GB" if cost.storage_gb is not None else ""
    hours = f", ~{cost.hours:.3g} h" if cost.hours is not None else ""
    gpu = f" ({cost.gpu_hours:.3g} GPU-h)" if cost.gpu_hours else ""
    return f"{events}{storage}{hours}{gpu} [{cost.basis}]"
