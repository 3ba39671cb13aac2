"""`dampeml --config FILE.yaml CMD ...`: any command's options from a YAML file.

The file maps the command's option names (as `--help` shows them, with `-` or `_`) to values;
options given on the command line win. Values go through the same types and checks as the
flags (click's `default_map`), and a key that is not an option of the command is refused with
the command's options listed, so a typo cannot be silently ignored.

A command with an output folder writes the options it ran with there (:func:`write_invocation`:
`<folder>/<command>.config.yaml`), file, flags and defaults resolved: `dampeml --config` of that
file reruns it.

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
    names = {}  # key -> parameter: its flag (`chain` of --chain) and its name (`chain_file`)
    for p in cmd.params:
        if p.name and p.name != "help":
            names[p.name] = names[option_key(p).replace("-", "_")] = p.name
    values = {}
    for key, value in raw.items():
        name = names.get(str(key).replace("-", "_"))
        if name is None:
            known = ", ".join(sorted(option_key(p) for p in cmd.params if p.name and p.name != "help"))
            command = f"{ctx.command_path} {ctx.invoked_subcommand}"
            raise OptionError(
                f"--config {path}: {key!r} is not an option of `{command}`; its options: {known}"
            )
        values[name] = value
    ctx.default_map = {ctx.invoked_subcommand: values}


def option_key(param) -> str:
    """The key of an option in a config file: its long flag without dashes (`input` for
    --input), an argument's name."""
    flags = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return flags[0][2:] if flags else param.name.replace("_", "-")


def invocation(ctx: typer.Context) -> tuple[str, str]:
    """The running command's file name and YAML text: its options as resolved (file, flags,
    defaults), headed by the command line that reads it back."""
    import yaml

    keys = {p.name: option_key(p) for p in ctx.command.params}
    options = {
        keys.get(name, name): _plain(value)
        for name, value in ctx.params.items()
        if value is not None and name not in _NOT_RECORDED
    }
    command = ctx.command_path.split(" ", 1)[-1]
    name = f"{command.replace(' ', '-')}.config.yaml"
    return name, f"# dampeml --config {name} {command}\n" + yaml.safe_dump(options, sort_keys=False)


def write_invocation(ctx: typer.Context, folder: str | Path) -> str:
    """Write :func:`invocation` to `folder` (a local folder or a pyarrow URI); the path written."""
    from dampeml.storage import TMP_DIR, Store

    name, text = invocation(ctx)
    store = Store.open(str(folder))
    made_tmp = not store.exists(TMP_DIR)
    store.write_text(name, text)
    if made_tmp:  # the store's attempt folder, made for this write alone: a finished job leaves none
        store.delete_dir(TMP_DIR)
    return store.path(name)


def log_invocation(ctx: typer.Context, run_id: str) -> None:
    """Log :func:`invocation` to the MLflow run `run_id` (under `config/`)."""
    from mlflow import MlflowClient

    name, text = invocation(ctx)
    MlflowClient().log_text(run_id, text, f"config/{name}")


#: not recorded: where the job ran (address, num_cpus), and overwrite (a rerun from the record
#: resumes the job; it never wipes its outputs)
_NOT_RECORDED = {"address", "num_cpus", "overwrite"}


def _plain(value: object) -> object:
    """A YAML-safe form of an option's value (paths as strings, tuples as lists)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
