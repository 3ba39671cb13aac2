"""The events a registered network was trained on, so a figure on held-out MC can be compared with
the one its training run logged.

A classifier's AUC depends on the energies it is shown: the report's held-out MC spans the
mission's ranges, while a network's dataset may cover narrower ones (e.g. electrons above
10 GeV). The domain is read from the version's own lineage (its training run's dataset URI ->
the manifest's spec): the simulated particles' true-energy ranges and the spec's selection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dampeml.datasets.loader import DatasetError, load_manifest
from dampeml.datasets.spec import DatasetSpec, Range, SimulationSource
from dampeml.io.schema import PDG


@dataclass(frozen=True)
class TrainingDomain:
    dataset: str  # the dataset version the network was trained on
    energy_gev: dict[str, tuple[float, float]]  # particle -> true kinetic energy range, GeV
    deposit_gev: Range
    true_energy_gev: Range

    def mask(self, true_pdg: np.ndarray, true_energy: np.ndarray, deposit_gev: np.ndarray) -> np.ndarray:
        """(N,) bool: the events a dataset of this domain could have held."""
        inside = np.zeros(len(true_pdg), dtype=bool)
        for particle, (lo, hi) in self.energy_gev.items():
            inside |= (true_pdg == PDG[particle]) & (true_energy >= lo) & (true_energy < hi)
        return inside & self.deposit_gev.contains(deposit_gev) & self.true_energy_gev.contains(true_energy)

    def describe(self) -> str:
        parts = [f"{p} {lo:g}-{hi:g} GeV" for p, (lo, hi) in sorted(self.energy_gev.items())]
        for name, r in (("deposited", self.deposit_gev), ("true", self.true_energy_gev)):
            if r.min is not None or r.max is not None:
                parts.append(f"{name} energy {r.min or 0:g}-{r.max if r.max is not None else 'inf'} GeV")
        return f"{', '.join(parts)} ({self.dataset})"


def domain_from_manifest(manifest: dict) -> TrainingDomain | None:
    """The domain of a dataset built from simulation sources; None for file sources (their energy
    ranges are not in the spec)."""
    spec = DatasetSpec.model_validate(manifest["spec"])
    if not all(isinstance(s, SimulationSource) for s in spec.sources):
        return None
    ranges: dict[str, tuple[float, float]] = {}
    for source in spec.sources:
        for particle, recipe in source.particles.items():
            lo, hi = ranges.get(particle, (recipe.energy_min, recipe.energy_max))
            ranges[particle] = (min(lo, recipe.energy_min), max(hi, recipe.energy_max))
    return TrainingDomain(
        manifest["dataset_version"], ranges, spec.selection.deposit_gev, spec.selection.true_energy_gev
    )


def registered_domain(name: str, version: str) -> tuple[TrainingDomain | None, str]:
    """(domain, why it is None) of a registered version, from its training run's dataset."""
    import mlflow

    client = mlflow.MlflowClient()
    try:
        run = client.get_run(client.get_model_version(name, version).run_id)
    except mlflow.exceptions.MlflowException as exc:
        return None, f"{name} v{version}: no training run ({exc.message.splitlines()[0]})"
    uri = run.data.tags.get("dataset_uri")
    if not uri:
        return None, f"{name} v{version} was not trained by the platform (no dataset_uri)"
    try:
        domain = domain_from_manifest(load_manifest(uri))
    except (DatasetError, OSError, KeyError, ValueError) as exc:
        return None, f"{name} v{version}: its dataset {uri} cannot be read ({exc})"
    return domain, "" if domain else f"{name} v{version}: its dataset reads files (no energy ranges)"
