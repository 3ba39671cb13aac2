"""Readable failures for every command, with exit codes a script can act on.

- 0: done;
- 2: bad input (`dampeml.errors.InputError`, and click's usage errors): one line naming the file,
  field, option or model and what to do; nothing was started, or nothing is lost by rerunning;
- 1: a job that could not finish (`dampeml.errors.JobError`), or the disk, a permission or the
  network failing under it (OSError): one line saying what happened and how to resume;
- 130: interrupted.

Anything else is a bug: it is not caught, and its traceback is printed.
"""

from __future__ import annotations

import functools

import pydantic
import typer
from rich.console import Console
from rich.markup import escape

from dampeml.errors import DampemlError, InputError, JobError

#: the commands' messages (silenced by --quiet); errors go to their own console, never silenced. Neither
#: folds a long line at the terminal's width (soft_wrap): a path in a message is printed whole, so it
#: can be copied (and a log or test reading the output finds it), however long.
console = Console(stderr=True, soft_wrap=True)
_errors = Console(stderr=True, soft_wrap=True)

#: exit codes (see the module docstring)
BAD_INPUT, FAILED = InputError.exit_code, JobError.exit_code


def _os_error(exc: OSError) -> str:
    """`Permission denied: /x (check the path, its permissions and free space)`: one line."""
    if exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename} (check the path, its permissions and free space)"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _fail(message: str, code: int) -> typer.Exit:
    _errors.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def clean_errors(fn):
    """Turn the project's errors into one readable line and their exit code; let bugs through."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DampemlError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except pydantic.ValidationError as exc:  # a typed config built from the user's values
            raise _fail(str(exc), BAD_INPUT) from None
        except OSError as exc:  # a disk, permission or network failure the checks up front could not see
            raise _fail(_os_error(exc), FAILED) from None
        except KeyboardInterrupt:
            _errors.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper
