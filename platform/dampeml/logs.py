"""The console of every command: the project's messages through `logging` (loggers under
`dampeml.*`), the libraries' own chatter kept out of it unless asked for.

The command line calls :func:`configure` once (`dampeml --verbose` / `--quiet`):
- quiet (-1): warnings and errors only;
- normal (0): the project's messages; Ray's and Ray Data's own INFO lines (progress logs,
  execution plans), the Ray workers' output and TensorFlow's C++ start-up messages stay in Ray's
  session logs (`/tmp/ray/session_latest/logs` on each node; Ray Data's in `ray-data.log`);
- verbose (1): all of it on the console.
Code that never calls it (tests, notebooks) keeps the libraries' own defaults.

What native code writes to the process's stderr (TensorFlow's and absl's start-up lines, which no
setting silences, and the output of child processes) goes to a log file when the command runs in a
terminal and is not verbose (:func:`divert_native_stderr`); Python's own stderr, where the
project's messages, warnings and tracebacks go, stays on the terminal.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

LOGGER = "dampeml"
#: Set before TensorFlow and MLflow start, in this process and (through the runtime env) in Ray's
#: workers: TensorFlow's C++ INFO lines and MLflow's INFO lines (e.g. "Creating initial MLflow
#: database tables") stay out of the console.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_LOGGING_LEVEL": "WARNING"}
#: library warnings that say nothing to a user of ours, silenced unless verbose: Ray's notice that
#: token authentication is on (we turn it on: docs/security.md), Ray Data's notice that its
#: progress bars are off (our commands show their own), and TensorFlow's Python warnings (the
#: chain's networks trace once each, which TensorFlow reports as "retracing")
NOTICES = (
    "ray._private.authentication.authentication_token_setup",
    "ray.data._internal.progress",
    "tensorflow",
)
_verbosity: int | None = None


def configure(verbosity: int = 0) -> None:
    """Route `dampeml.*` messages to stderr at the level `verbosity` asks for (see the module)."""

    global _verbosity
    _verbosity = verbosity
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO)
    if not logger.handlers:
        handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    if verbosity <= 0:
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
        for name in NOTICES:
            logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's own event lines ("Successfully registered model ...", "Created version ...") kept
    out of the console inside the block (at DEBUG under `dampeml`), unless verbose or never
    configured: our commands say what was registered. They go to `sys.stderr` at the time of the
    call (MLflow's own switch for them is turned back on by its model logging, hence this)."""
    if not _quieting():
        yield
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        if text := captured.getvalue().strip():
            logging.getLogger(LOGGER).debug("MLflow: %s", text)


def _quieting() -> bool:
    """Whether the libraries' own output is kept off the console: configured, and not verbose."""
    return _verbosity is not None and _verbosity <= 0


def verbosity() -> int | None:
    """What :func:`configure` was given; None when it was not called."""
    return _verbosity


def ray_init_options() -> dict:
    """`ray.init` options for the console asked for: Ray's driver messages at WARNING and the
    workers' output left in the session logs, unless verbose (or never configured)."""
    if not _quieting():
        return {}
    return {"log_to_driver": False, "logging_level": logging.WARNING}


def quiet_ray_data() -> None:
    """Ray Data's console handler at WARNING (its progress log lines and execution plans stay in
    `ray-data.log`) and its progress bars off, unless verbose or never configured."""
    if not _quieting():
        return
    import ray.data

    for handler in logging.getLogger("ray.data").handlers:
        if type(handler).__name__ != "SessionFileHandler":
            handler.setLevel(logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the commands show their own


def worker_env() -> dict[str, str]:
    """The QUIET_ENV variables this process has, for Ray's workers."""
    return {k: os.environ[k] for k in QUIET_ENV if k in os.environ}


def native_log_dir() -> Path:
    """Where :func:`divert_native_stderr` writes (DAMPEML_LOG_DIR, else the temporary folder)."""
    return Path(os.environ.get("DAMPEML_LOG_DIR") or Path(tempfile.gettempdir()) / "dampeml")


def divert_native_stderr(name: str, folder: Path | None = None) -> tuple[Path, Callable[[], None]]:
    """Point file descriptor 2 at `folder/<time>-<name>-<pid>.log`, Python's `sys.stderr` staying on
    the terminal; returns the log's path and the function that puts both back."""
    folder = folder or native_log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-{os.getpid()}.log"
    sys.stderr.flush()
    terminal = os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    os.close(log)
    python_stderr = sys.stderr
    sys.stderr = os.fdopen(
        os.dup(terminal), "w", buffering=1, encoding=python_stderr.encoding, errors="replace"
    )

    def restore() -> None:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(terminal, 2)
        os.close(terminal)

    return path, restore
