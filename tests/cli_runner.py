"""The `dampeml` command run in-process as a user runs it, for the tests of its messages and errors.

One runner for every test module that checks what a command prints: the output comes back as one
line (a message may span lines), a library's log handler left pointing at an earlier in-process
run's closed stream is pointed back at stderr, and an exception that escapes the CLI's error
printer fails the test with its traceback (a user would have seen that traceback).
"""

from __future__ import annotations

import logging
import sys
import traceback

import pytest


def unbind_closed_log_streams() -> None:
    """A log handler that a library (Ray, MLflow) set up during an earlier in-process run holds that
    run's captured stream, closed since: its next record would print "--- Logging error ---" with a
    traceback into this run's output. A real `dampeml` process never has one; point them at stderr."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for lg in loggers:
        for h in getattr(lg, "handlers", []):
            if isinstance(h, logging.StreamHandler) and getattr(h.stream, "closed", False):
                h.stream = sys.__stderr__  # not setStream: it flushes the closed stream first


def invoke_cli(*args: object):
    """typer's result of `dampeml ARGS` (exit_code, output, exception), nothing checked."""
    from typer.testing import CliRunner

    from dampeml.cli.main import app

    unbind_closed_log_streams()
    return CliRunner().invoke(app, [str(a) for a in args])


def run_cli(*args: object) -> tuple[int, str]:
    """`dampeml ARGS`: (exit code, its output as one line); an escaped exception fails the test."""
    r = invoke_cli(*args)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        tb = "".join(traceback.format_exception(r.exception))
        pytest.fail(f"dampeml {' '.join(map(str, args))} raised (a traceback for the user):\n{tb}")
    return r.exit_code, " ".join(r.output.split())
