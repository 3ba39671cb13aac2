"""Shared fixtures: small real event files made once per session by the real simulation."""

from __future__ import annotations

from pathlib import Path

import pytest

from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.io.root_writer import write_event_file


def make_file(path: Path, particle: str, n: int, e_min: float, e_max: float, mode: str = "mc",
              seed: int = 1) -> Path:
    branches, metadata = simulate(SimulationConfig(particle, n, e_min, e_max, mode=mode, seed=seed))
    return write_event_file(path, branches, metadata)


@pytest.fixture(scope="session")
def sample_files(tmp_path_factory) -> dict[str, Path]:
    """Small MC files per particle (100 GeV - 100 TeV) and one flight-like proton file."""
    d = tmp_path_factory.mktemp("events")
    return {
        "proton": make_file(d / "proton.root", "proton", 600, 100, 1e5, seed=11),
        "helium": make_file(d / "helium.root", "helium", 600, 100, 1e5, seed=12),
        "electron": make_file(d / "electron.root", "electron", 400, 100, 1e4, seed=13),
        "flight": make_file(d / "flight.root", "proton", 300, 100, 1e5, mode="flight", seed=14),
    }
