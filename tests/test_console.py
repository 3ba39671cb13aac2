"""What a person sees: a command's console holds the project's lines, not Ray's, Ray Data's or
TensorFlow's own (those stay in Ray's session logs), unless --verbose; --quiet leaves errors only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "datasets" / "bgo-direction-low-small.yaml"
NOISE = ("logging_progress", "streaming_executor", "Running Dataset", "I0000", "cpu_feature_guard")


def _build(tmp_path: Path, *flags: str) -> tuple[int, str]:
    out = tmp_path / f"ds{len(flags)}{''.join(flags)}"
    cmd = [sys.executable, "-m", "dampeml.cli.main", *flags, "dataset", "build", str(SPEC), "--out", str(out),
           "--limit-events", "200"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    return res.returncode, res.stdout + res.stderr


@pytest.mark.timeout(600)
def test_the_console_shows_the_projects_lines_and_hides_the_libraries_unless_verbose(tmp_path):
    code, normal = _build(tmp_path)
    print(f"\n--- normal ({len(normal.splitlines())} lines)\n{normal}")
    assert code == 0, normal
    assert "written" in normal and "bytes/event" in normal
    assert not [n for n in NOISE if n in normal], normal
    code, verbose = _build(tmp_path, "--verbose")
    print(f"--- verbose: {len(verbose.splitlines())} lines")
    assert code == 0 and "written" in verbose
    assert any(n in verbose for n in NOISE[:3]), verbose[-3000:]  # Ray Data's own lines are back
    code, quiet = _build(tmp_path, "--quiet")
    print(f"--- quiet ({len(quiet.splitlines())} lines)\n{quiet}")
    assert code == 0 and "written" not in quiet and len(quiet.splitlines()) <= 2, quiet
