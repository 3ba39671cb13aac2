"""The suite's own guards: under CI a skip (a broken install, PostgreSQL missing) is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("ci", ["true", ""])
def test_skips_fail_under_ci(tmp_path, ci):
    (tmp_path / "conftest.py").write_text("from tests.conftest import *  # noqa: F403 (the hooks)\n")
    (tmp_path / "test_env.py").write_text(
        "import pytest\n"
        "missing = pytest.importorskip('no_such_module_dampeml')\n"
        "def test_never_runs():\n    pass\n"
    )
    (tmp_path / "test_runtime.py").write_text(
        "import pytest\n"
        "def test_skips():\n    pytest.skip('PostgreSQL is not installed')\n"
        "def test_passes():\n    pass\n"
    )
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            "--rootdir",
            str(tmp_path),
            str(tmp_path),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    out = run.stdout + run.stderr
    print(out[-2000:])
    if ci:
        assert run.returncode != 0
        assert "1 failed" in out and "1 passed" in out and "1 error" in out
        assert "where nothing may skip" in out and "no_such_module_dampeml" in out and "PostgreSQL" in out
    else:
        assert run.returncode == 0 and "1 passed, 2 skipped" in out
