"""Shared fixtures: small real event files made once per session by the real simulation."""

from __future__ import annotations

from pathlib import Path

import pytest

from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.io.root_writer import write_event_file


def make_file(
    path: Path, particle: str, n: int, e_min: float, e_max: float, mode: str = "mc", seed: int = 1
) -> Path:
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


@pytest.fixture(scope="session")
def registered_models(tmp_path_factory) -> str:
    """A private MLflow store (sqlite + artifacts in a temp dir) holding every catalog network.

    Small presets, untrained weights (tagged untrained=true): for plumbing, accounting and
    timing tests, never physics. Each network and the three `bgo-direction-*-aligned` models
    is registered once, as version 1, under the aliases `production` and `staging`. Returns the
    tracking URI; point MLFLOW_TRACKING_URI at it (monkeypatch.setenv) in the test that uses it.
    """
    import os

    from dampeml.registry.bootstrap import ensure_experiment, register_catalog

    d = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        ensure_experiment(d / "artifacts")
        register_catalog(aliases=("production", "staging"), preset="small")
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    return uri


@pytest.fixture(scope="session")
def trained_bgo_mid():
    """The small bgo-direction-mid trained on MC p/He once per session: (model, info)."""
    from tests.trained_bgo import train_bgo_mid

    return train_bgo_mid()
