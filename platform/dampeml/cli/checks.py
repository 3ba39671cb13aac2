"""Checks of command-line values made before any work, each naming the option and what to do.

The libraries check their inputs too, but by field name (`n_events`) and sometimes only when they
reach them: a simulation that cannot write its file learns it after simulating everything.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from dampeml.errors import InputError


class OptionError(InputError):
    """A command-line value that cannot work; the message names the option and what to do."""


def _nearest_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable_folder(folder: str | os.PathLike, option: str, target: str | os.PathLike) -> None:
    """`folder` exists or can be made, and a file can be created in it: tried with a temporary
    file in its nearest existing parent (permission bits say nothing for root, ACLs, read-only
    mounts); nothing is left behind."""
    existing = _nearest_existing(Path(folder))
    if not existing.is_dir():
        raise OptionError(f"{option} {target}: {existing} is a file, not a folder; choose another path")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".dampeml-write-check-")
    except OSError as exc:
        raise OptionError(
            f"{option} {target}: cannot write in {existing} ({exc.strerror or exc}); "
            "choose a folder you can write to"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(path: str | os.PathLike, option: str = "--out", overwrite: bool = False) -> None:
    """An output file that can be written: no folder in its place, no existing file unless
    `overwrite`, a writable folder to hold it."""
    path = Path(path)
    if path.is_dir():
        raise OptionError(
            f"{option} {path} is a folder: name a file, e.g. {path / 'events.root'} "
            "(--overwrite replaces files, never folders)"
        )
    if path.exists() and not overwrite:
        raise OptionError(f"{option} {path} exists: pass --overwrite to replace it")
    check_writable_folder(path.parent, option, path)


def check_output_folder(location: str, option: str = "--out") -> None:
    """A local output folder (a dataset, reprocessed files, plots) that is no existing file and can
    be written; URIs (s3://...) are left to their filesystem."""
    if "://" in location and not location.startswith("file://"):
        return
    path = Path(location.removeprefix("file://"))
    if path.exists() and not path.is_dir():
        raise OptionError(
            f"{option} {location} is an existing file: name a folder (it will hold several files)"
        )
    check_writable_folder(path, option, location)


def check_simulation_options(
    events: int,
    energy_min: float,
    energy_max: float,
    spectrum_index: float,
    seed: int,
    events_option: str = "--events",
    max_events: int | None = None,
) -> None:
    """Ranges of `simulate` and `simulate-production`, by option name: finite energies
    0 < --energy-min < --energy-max, a finite --spectrum-index, --seed >= 0, and 1 <= events <=
    `max_events` (the per-file bound for one file)."""
    from dampeml.detector.simulation import MAX_EVENTS_PER_FILE

    if events < 1:
        raise OptionError(f"{events_option} {events}: simulate at least 1 event")
    if max_events is not None and events > max_events:
        raise OptionError(
            f"{events_option} {events}: at most {max_events} events per file (they are held in memory "
            f"until written); for more use `dampeml simulate-production --events N` (files of "
            f"--events-per-shard <= {MAX_EVENTS_PER_FILE} events)"
        )
    for option, value in (
        ("--energy-min", energy_min),
        ("--energy-max", energy_max),
        ("--spectrum-index", spectrum_index),
    ):
        if not math.isfinite(value):
            raise OptionError(f"{option} {value}: must be a finite number")
    if not 0 < energy_min < energy_max:
        raise OptionError(
            f"--energy-min {energy_min} --energy-max {energy_max}: need 0 < --energy-min < --energy-max (GeV)"
        )
    if seed < 0:
        raise OptionError(f"--seed {seed}: must be >= 0")
