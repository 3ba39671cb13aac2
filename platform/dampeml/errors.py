"""The project's errors: bad input or a failed job; anything else is a bug.

Every error the project raises on purpose derives from one of two branches, so that the command
line can tell them apart (`dampeml.cli.errors`): bad input exits 2 with one line naming the
file, field, option or model and what to do; a job that could not finish exits 1 with how to
resume. Any other exception is a bug and keeps its traceback. The branches also derive from
the built-in exception a caller would expect (ValueError, RuntimeError), so `except ValueError`
around a spec or config keeps working.
"""

from __future__ import annotations


class DampemlError(Exception):
    """Base of every error the project raises on purpose."""

    exit_code = 1


class InputError(DampemlError, ValueError):
    """Bad input: a file, field, option, model name or value; the message names it and says what to do."""

    exit_code = 2


class JobError(DampemlError, RuntimeError):
    """A job that could not finish (failed units, too many bad events, a refused promotion); the
    message says what happened and how to resume."""

    exit_code = 1
