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
NOISE += ("Token authentication is enabled", "Progress bars disabled", "Creating initial MLflow database")
NOISE += ("Warning:", "warnings.warn(")  # any library's Python warning (UserWarning: ..., FutureWarning: ...)


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


@pytest.mark.timeout(120)
def test_quiet_leaves_errors_only(tmp_path):
    """--quiet drops the project's info lines and keeps its errors (a command without Ray: the
    switch is the same for every command)."""

    def simulate(*flags: str, events: str = "20") -> tuple[int, str]:
        cmd = [sys.executable, "-m", "dampeml.cli.main", *flags, "simulate", "--particle", "proton",
               "--events", events, "--energy-min", "10", "--energy-max", "100",
               "--out", f"s{len(flags)}-{events}.root"]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=100, cwd=tmp_path)
        return res.returncode, res.stdout + res.stderr

    code, normal = simulate()
    assert code == 0 and "wrote 20" in normal, normal
    code, quiet = simulate("--quiet")
    print(f"\n--- quiet ({len(quiet.splitlines())} lines)\n{quiet}")
    assert code == 0 and quiet.strip() == "", quiet
    code, error = simulate("--quiet", events="0")
    print(f"--- quiet, bad input (exit {code})\n{error}")
    assert code == 2 and "--events 0" in error, error


_DIVERTED = """
import os, subprocess, sys
sys.path.insert(0, {platform!r})
from pathlib import Path
from dampeml.logs import divert_native_stderr
path, restore = divert_native_stderr("check", Path({folder!r}))
os.write(2, b"native start-up line\\n")                     # what TensorFlow's C++ does
subprocess.run(["sh", "-c", "echo from a child process >&2"])  # e.g. Ray's raylet
print("the project's line", file=sys.stderr)
restore()
print("after restore", file=sys.stderr)
print(path)
"""


@pytest.mark.timeout(60)
def test_native_stderr_goes_to_a_log_file_and_python_stderr_stays(tmp_path):
    script = _DIVERTED.format(platform=str(REPO / "platform"), folder=str(tmp_path / "logs"))
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert res.returncode == 0, res.stderr
    log = Path(res.stdout.strip()).read_text()
    print(f"terminal:\n{res.stderr}log:\n{log}")
    assert "native start-up line" in log and "from a child process" in log
    assert "the project's line" in res.stderr and "after restore" in res.stderr
    assert "native" not in res.stderr and "child" not in res.stderr and "project" not in log


@pytest.mark.timeout(60)
@pytest.mark.slow  # two CLI processes: ~15 s
def test_a_command_at_a_terminal_diverts_native_output_and_one_in_a_pipe_does_not(tmp_path):
    """At a terminal (a pseudo-terminal here) the command writes a native log; piped, it does not."""
    import os
    import pty

    env = {
        **os.environ,
        "DAMPEML_LOG_DIR": str(tmp_path / "logs"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db",
    }
    cmd = [sys.executable, "-m", "dampeml.cli.main", "models", "list"]
    subprocess.run(cmd, capture_output=True, env=env, timeout=50, check=True)
    assert not (tmp_path / "logs").exists()
    leader, follower = pty.openpty()
    proc = subprocess.run(cmd, stdin=follower, stdout=follower, stderr=follower, env=env, timeout=50)
    os.close(follower)
    os.close(leader)
    assert proc.returncode == 0
    assert [p.name for p in (tmp_path / "logs").glob("*-models-*.log")], "no native log at a terminal"


_REGISTER = """
import sys
sys.path.insert(0, {platform!r})
from dampeml import logs
logs.configure({verbosity})
import mlflow
from dampeml.models.architecture import Architecture
from dampeml.registry.logging import log_keras_model
architecture = Architecture("bgo-direction-low", "small", {{}})
with mlflow.start_run():
    print("registered version", log_keras_model(architecture.build(), architecture))
"""


@pytest.mark.timeout(240)
def test_mlflow_registration_lines_stay_out_unless_verbose(tmp_path):
    """MLflow prints "Successfully registered model" itself (and its model logging turns its own
    switch for that back on): the console shows it only with --verbose."""
    import os

    def register(verbosity: int) -> str:
        script = _REGISTER.format(platform=str(REPO / "platform"), verbosity=verbosity)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # others' experiment ids
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/m{verbosity}.db"
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=200,
                             env=env, cwd=tmp_path)  # fmt: skip
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout + res.stderr

    normal, verbose = register(0), register(1)
    assert "registered version 1" in normal and "Successfully registered model" not in normal, normal
    assert "Successfully registered model 'bgo-direction-low'" in verbose
