"""What a training run is: a typed config, plus the batch/learning-rate scaling rule.

Scaling with workers (documented choice): the per-worker batch stays at the paper's 32,
so the global batch is 32 x workers, and the learning rate grows linearly with the
global batch (Goyal et al. 2017: lr = 1e-4 x workers), which keeps the per-sample step
size of the paper's single-GPU training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

from dampeml.errors import InputError

PAPER_BATCH = 32
PAPER_LR = 1e-4


@dataclass(frozen=True)
class TrainConfig:
    network: str
    dataset: str  # dataset URI (a build of the network's dataset kind)
    workers: int = 2
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    epochs: int = 3
    preset: Literal["small", "full"] = "small"
    overrides: dict = field(default_factory=dict)  # config fields of the network family
    batch_per_worker: int = PAPER_BATCH
    base_lr: float | None = None  # default: the network preset's rate (the paper's 1e-4 for 'full')
    steps_per_epoch: int | None = None  # default: one pass over the training split
    lr_patience: int = 2  # reduce-on-plateau: halve the learning rate after this many flat epochs
    storage: str = "dampeml-runs"  # Ray Train storage (checkpoints); a shared URI on a cluster
    run_name: str | None = None
    max_failures: int = 2
    seed: int = 0
    register: bool = True
    init_from: str | None = None  # models:/NAME@ALIAS or /VERSION: fine-tune from its weights
    frozen_backbone: bool = False  # train the head only (transfer learning; models.common.BACKBONE)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise InputError(f"workers must be >= 1, got {self.workers}")
        if self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}")
        if self.gpus_per_worker < 0:
            raise InputError("gpus_per_worker must be >= 0")

    @property
    def global_batch(self) -> int:
        return self.batch_per_worker * self.workers

    def learning_rate(self, preset_lr: float = PAPER_LR) -> float:
        """The rate for this many workers: linear in the global batch."""
        return (self.base_lr or preset_lr) * self.workers

    def to_dict(self) -> dict:
        return asdict(self)
