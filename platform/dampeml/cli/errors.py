"""Readable failures for every command: the project's input errors become one line and exit 1.

Exit codes follow ctapipe's tools: 0 ok, 1 error (bad input, with a message naming the
file and what to do), 2 usage error, 130 interrupted.
"""

from __future__ import annotations

import functools

import typer
from rich.console import Console
from rich.markup import escape

from dampeml.io.root_reader import EventFileError
from dampeml.security import StorageNotAllowedError, UnsafeModelError

console = Console(stderr=True)


def _runtime_errors() -> tuple[type[Exception], ...]:
    """The project's own "cannot go on" errors (RuntimeError subclasses); other RuntimeErrors are bugs."""
    from dampeml.datasets.build import DatasetBuildError
    from dampeml.detector.production import ProductionError
    from dampeml.inference.predictor import ReprocessError
    from dampeml.registry.models import PromotionRefusedError
    from dampeml.training.trainer import TrainingError

    return (
        DatasetBuildError,
        ProductionError,
        PromotionRefusedError,
        ReprocessError,
        TrainingError,
        UnsafeModelError,
    )


def _os_error(exc: OSError) -> str:
    """`Permission denied: /x (check the path, its permissions and free space)`: one line."""
    if exc.strerror and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename} (check the path, its permissions and free space)"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def clean_errors(fn):
    """Turn the project's input errors into one readable line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (
            EventFileError,
            ValueError,
            LookupError,
            FileExistsError,
            StorageNotAllowedError,
            *_runtime_errors(),
        ) as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(1) from None
        except OSError as exc:  # a disk, permission or network failure the checks up front could not see
            console.print(f"[bold red]error:[/] {escape(_os_error(exc))}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper
