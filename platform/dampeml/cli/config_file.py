"""`dampeml --config FILE.yaml CMD ...`: any command's options from a YAML file.

The file maps the command's option names (as `--help` shows them, with `-` or `_`) to values;
options given on the command line win. Values go through the same types and checks as the
flags (click's `default_map`), and a key that is not an option of the command is refused with
the command's options listed, so a typo cannot be silently ignored.

The top-level callback reads the file (:func:`read_config`); the group that finally names the
command (the top level, or `dampeml dataset`, `models`, `pipeline`) turns it into that command's
defaults (:func:`apply_config`): only there is the command known.
"""

from __future__ import annotations

from pathlib import Path

import typer

from dampeml.cli.checks import OptionError

_KEY = "dampeml.config"


def read_config(ctx: typer.Context, path: Path) -> None:
    """Read the YAML mapping at `path` for the command this invocation runs."""
    from dampeml.datasets.spec import read_yaml_mapping

    raw = read_yaml_mapping(Path(path), "config file", OptionError, "a YAML mapping of the command's options")
    ctx.meta[_KEY] = (Path(path), raw)
    apply_config(ctx)


def apply_config(ctx: typer.Context) -> None:
    """In a group's callback: the read config as the defaults of the command it invokes (when that
    is a command, not a group); OptionError for a key that is not one of its options."""
    if _KEY not in ctx.meta or not ctx.invoked_subcommand:
        return
    cmd = ctx.command.get_command(ctx, ctx.invoked_subcommand)
    if cmd is None or hasattr(cmd, "get_command"):  # a group: its own callback applies it
        return
    path, raw = ctx.meta[_KEY]
    options = {p.name: p for p in cmd.params if p.name and p.name != "help"}
    values = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in options:
            known = ", ".join(sorted(n.replace("_", "-") for n in options))
            command = f"{ctx.command_path} {ctx.invoked_subcommand}"
            raise OptionError(
                f"--config {path}: {key!r} is not an option of `{command}`; its options: {known}"
            )
        values[name] = value
    ctx.default_map = {ctx.invoked_subcommand: values}
