"""The training domain of a registered network, read from its dataset's manifest, and the events
of held-out MC inside it (hand-built cases with known answers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from dampeml.datasets.spec import DatasetSpec
from dampeml.evaluation.domain import domain_from_manifest

REPO = Path(__file__).resolve().parents[1]


def _manifest(spec: dict) -> dict:
    return {"spec": DatasetSpec.model_validate(spec).model_dump(mode="json"), "dataset_version": "ep@x"}


def test_the_domain_of_a_simulated_dataset_and_the_events_inside_it():
    spec = yaml.safe_load((REPO / "datasets" / "electron-proton-small.yaml").read_text())
    domain = domain_from_manifest(_manifest(spec))
    assert domain.energy_gev == {"electron": (10.0, 1e4), "proton": (50.0, 1e5)}
    print(f"\n{domain.describe()}")
    assert "electron 10-10000 GeV" in domain.describe() and "deposited energy 10-inf GeV" in domain.describe()
    pdg = np.array([11, 11, 11, 2212, 2212, 2212, 1000020040])
    energy = np.array([5.0, 100.0, 2e4, 20.0, 1e3, 1e3, 1e3])
    deposit = np.array([4.0, 80.0, 1e4, 5.0, 300.0, 8.0, 300.0])
    # e below range | e inside | e above | p below | p inside | p with 8 GeV deposited | helium
    assert domain.mask(pdg, energy, deposit).tolist() == [False, True, False, False, True, False, False]


def test_a_dataset_of_files_has_no_known_domain():
    spec = yaml.safe_load((REPO / "datasets" / "electron-proton-small.yaml").read_text())
    spec["sources"] = [{"type": "files", "glob": "/data/*.root"}]
    assert domain_from_manifest(_manifest(spec)) is None
