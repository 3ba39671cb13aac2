"""What `import dampeml` sets for TensorFlow, in this process and for every Ray worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

NAMES = ("TF_USE_LEGACY_KERAS", "TF_FORCE_GPU_ALLOW_GROWTH")
SHOW = "import os, json, dampeml; print(json.dumps({k: os.environ.get(k) for k in dampeml.TF_ENV}))"


def _env_after_import(**preset: str) -> dict:
    """The variables as a fresh interpreter sees them after `import dampeml`, from `preset` alone."""
    env = {k: v for k, v in os.environ.items() if k not in NAMES} | preset
    out = subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_import_sets_tf_keras_and_gpu_memory_growth_unless_already_set():
    assert _env_after_import() == {"TF_USE_LEGACY_KERAS": "1", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    # a value the user set wins: e.g. one process per GPU that wants the whole card up front
    assert _env_after_import(TF_FORCE_GPU_ALLOW_GROWTH="false")["TF_FORCE_GPU_ALLOW_GROWTH"] == "false"


def test_ray_workers_get_the_same_environment():
    from dampeml import TF_ENV
    from dampeml.runtime import RUNTIME_ENV, TRAIN_POLL_ENV

    assert RUNTIME_ENV["env_vars"] == {**TF_ENV, **TRAIN_POLL_ENV}
    assert set(NAMES) <= set(TF_ENV)


def test_setuptools_is_past_its_cves_in_the_build_and_the_environment():
    """Issue 19, defect 11: the venv had setuptools 65.5, below the fixes of CVE-2024-6345 (70.0)
    and CVE-2025-47273 (78.1.1). pyproject pins the floor for the build and for the install."""
    import tomllib
    from importlib.metadata import version
    from pathlib import Path

    from packaging.requirements import Requirement
    from packaging.version import Version

    fixed = Version("78.1.1")
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    for where, reqs in [
        ("build-system.requires", project["build-system"]["requires"]),
        ("project.dependencies", project["project"]["dependencies"]),
    ]:
        floors = [Requirement(r).specifier for r in reqs if Requirement(r).name == "setuptools"]
        assert floors, f"{where} has no setuptools floor"
        below = [v for v in ("65.5.0", "70.0.0", "78.1.0") if floors[0].contains(v)]
        assert not below and floors[0].contains(str(fixed)), (where, str(floors[0]))
    assert Version(version("setuptools")) >= fixed, f"installed setuptools {version('setuptools')}"
