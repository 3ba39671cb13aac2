"""The bookkeeping of a resumable job, shared by dataset builds and reprocessing: the parameters the
job started with, one commit marker per finished unit of work, and the event accounting that must
close.

A job's output folder (any :class:`~dampeml.storage.Store`) holds its parameters file (what a rerun
must match to resume into it) and a markers folder with `<unit>.json` per committed unit, written
last, after the unit's outputs (so a unit is done if and only if its marker exists). Simulation
production keeps the same rules with another record: a shard's ROOT file carries its generation
parameters and event count in its metadata and is written atomically, so the file is its own
marker (`detector.production.check_shard`).
"""

from __future__ import annotations

from dataclasses import dataclass

from dampeml.errors import JobError
from dampeml.storage import Store


class AccountingError(JobError):
    """Events read that are neither written, filtered nor quarantined: a bug, never bad input."""


def check_accounting(where: str, read: int, **parts: int) -> None:
    """AccountingError unless `parts` (written, filtered, quarantined...) add up to `read`."""
    if sum(parts.values()) != read:
        terms = " + ".join(f"{k} {v}" for k, v in parts.items())
        raise AccountingError(f"{where}: accounting does not close (a bug): read {read} != {terms}")


@dataclass(frozen=True)
class Ledger:
    """A job's parameters file and commit markers in its output store."""

    store: Store
    params_file: str
    markers_dir: str

    def started(self) -> dict | None:
        """The parameters of the job that started this output, or None for a new one."""
        return self.store.read_json(self.params_file) if self.store.exists(self.params_file) else None

    def start(self, params: dict) -> None:
        self.store.write_json(self.params_file, params)

    def done(self) -> set[str]:
        """The committed units."""
        return {name[: -len(".json")] for name in self.store.list(self.markers_dir, ".json")}

    def commit(self, unit: str, marker: dict) -> None:
        """Mark `unit` done, with its accounting; call after its outputs are in place."""
        self.store.write_json(f"{self.markers_dir}/{unit}.json", marker)

    def marker(self, unit: str) -> dict:
        return self.store.read_json(f"{self.markers_dir}/{unit}.json")

    def clear(self) -> None:
        """Forget the job: its markers and parameters (its outputs are the caller's)."""
        self.store.delete_dir(self.markers_dir)
        if self.store.exists(self.params_file):
            self.store.fs.delete_file(self.store.path(self.params_file))
