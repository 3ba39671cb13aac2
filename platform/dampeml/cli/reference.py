"""`dampeml config-reference`: the reference of every configuration field, generated from the code.

Every YAML the project reads is a typed model: dataset specs, campaigns and recipes (pydantic), the
chain's settings (a dataclass that pydantic validates) and the options of each command (what
`dampeml --config FILE.yaml CMD` reads). This module walks them and writes one Markdown page, so the
reference cannot drift from the code: a field's meaning is its `description=`, else the `#:` comment
above it, else the `#` comment on its line. tests/test_config_reference.py checks that the shipped
page (docs/config-reference.md) is what this writes.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from dampeml.cli.errors import clean_errors, console

_FIELD = re.compile(r"^    (\w+)\s*:")


def field_comments(cls: type) -> dict[str, str]:
    """{field: its comment}: the `#:` lines above the field, else the `#` comment on its line."""
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        match = _FIELD.match(line)
        if match and not stripped.startswith(("def ", "@")):
            trailing = line.split("#", 1)[1].strip() if "  # " in line else ""
            text = " ".join(pending) or trailing
            if text:
                out[match.group(1)] = text
        pending = []
    return out


def type_name(tp: Any) -> str:
    """A short readable name of an annotation: `int`, `float | null`, `list[str]`, `a | b` for literals."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return type_name(typing.get_args(tp)[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a) if isinstance(a, str) else str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join("null" if a is type(None) else type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    if tp is Ellipsis:
        return "..."
    return getattr(tp, "__name__", str(tp))


def _default(value: Any) -> str:
    if value is PydanticUndefined or value is dataclasses.MISSING:
        return "**required**"
    if isinstance(value, BaseModel) or dataclasses.is_dataclass(value):
        return "(see below)"
    if value is None:
        return "null"
    if isinstance(value, float) and value == float("inf"):
        return ".inf"
    return f"`{value!r}`" if not isinstance(value, str) else f"`{value}`"


def _nested(tp: Any) -> Iterator[type]:
    """The models and dataclasses an annotation refers to (inside unions, lists, dicts)."""
    if isinstance(tp, type) and (issubclass(tp, BaseModel) or dataclasses.is_dataclass(tp)):
        yield tp
    for arg in typing.get_args(tp):
        yield from _nested(arg)


def model_rows(cls: type) -> list[tuple[str, str, str, str, Any]]:
    """(field, type, default, meaning, annotation) of a pydantic model or a dataclass, in order."""
    comments = field_comments(cls)
    rows = []
    if issubclass(cls, BaseModel):
        for name, info in cls.model_fields.items():
            default = info.default_factory() if info.default_factory else info.default
            meaning = info.description or comments.get(name, "")
            rows.append((name, type_name(info.annotation), _default(default), meaning, info.annotation))
    else:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            rows.append(
                (f.name, type_name(hints[f.name]), _default(default), comments.get(f.name, ""), hints[f.name])
            )
    return rows


def model_section(title: str, intro: str, root: type) -> list[str]:
    """A heading, `intro`, and one table per model reachable from `root` (root first)."""
    out = [f"## {title}", "", intro, ""]
    seen: list[type] = []
    todo = [root]
    while todo:
        cls = todo.pop(0)
        if cls in seen:
            continue
        seen.append(cls)
        rows = model_rows(cls)
        own = cls.__dict__.get("__doc__") or ""  # not an inherited one (BaseModel's)
        doc = inspect.cleandoc(own).split("\n\n")[0].replace("\n", " ")
        if cls is not root:
            out += [f"### `{cls.__name__}`", ""]
        if doc and not doc.startswith(cls.__name__ + "("):
            out += [doc, ""]
        out += ["| field | type | default | meaning |", "|---|---|---|---|"]
        for name, tname, default, meaning, annotation in rows:
            out.append(f"| `{name}` | {tname} | {default} | {meaning.replace('|', '/')} |")
            todo += [c for c in _nested(annotation) if c not in seen]
        out.append("")
    return out


def command_section(root: Any) -> list[str]:
    """One table per command: the keys a `--config` file may hold (its options)."""
    from dampeml.cli.config_file import option_key

    out = [
        "## Command options (`dampeml --config FILE.yaml CMD`)",
        "",
        "A config file maps a command's option names (with `-` or `_`) to values; flags on the command",
        "line win. Commands with an output folder write the options they ran with there",
        "(`<command>.config.yaml`); `dampeml train` logs them to its MLflow run (`config/`).",
        "",
    ]
    for path, cmd in _commands(root, "dampeml"):
        params = [p for p in cmd.params if p.name != "help"]
        if not params:
            continue
        out += [f"### `{path}`", "", (cmd.help or "").split("\n\n")[0].replace("\n", " "), ""]
        out += ["| key | kind | default | meaning |", "|---|---|---|---|"]
        for p in params:
            kind = type_name(p.type_descriptor.annotation)
            kind += " (argument)" if p.param_type_name == "argument" else ""
            default = p.default if not callable(p.default) else None
            shown = "**required**" if p.required else _default(default)
            help_text = (getattr(p, "help", None) or "").replace("|", "/").replace("\n", " ")
            out.append(f"| `{option_key(p)}` | {kind} | {shown} | {help_text} |")
        out.append("")
    return out


def _commands(group: Any, path: str) -> Iterator[tuple[str, Any]]:
    for name in sorted(group.commands):
        cmd = group.commands[name]
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, f"{path} {name}")
        else:
            yield f"{path} {name}", cmd


def undocumented(root: Any) -> list[str]:
    """`section: field` for every field and option of the page without a meaning."""
    missing, where = [], ""
    for line in render(root).splitlines():
        if line.startswith("#"):
            where = line.lstrip("# ")
        if line.startswith("| `") and line.endswith("|  |"):
            missing.append(f"{where}: {line.split(' | ')[0][2:]}")
    return missing


def render(root: Any) -> str:
    """The whole reference page; `root`: the `dampeml` command group (its commands' options)."""
    from dampeml.datasets.spec import DatasetSpec
    from dampeml.physics.mission import Mission
    from dampeml.pipeline.recipe import RecipeFile, Step
    from dampeml.reconstruction.config import ChainConfig
    from dampeml.reconstruction.standard import StandardConfig
    from dampeml.tuning.campaign import Campaign

    lines = [
        "# Configuration reference",
        "",
        "Generated from the code by `dampeml config-reference --out docs/config-reference.md`; do not",
        "edit by hand. Every file is strict: a field that is not listed here is refused with its name.",
        "",
    ]
    lines += model_section(
        "Dataset spec (`datasets/*.yaml`, `dampeml dataset build SPEC`)",
        "What a training dataset holds; its content hash versions the dataset (docs/datasets.md).",
        DatasetSpec,
    )
    lines += model_section(
        "Training recipe (`recipes/*.yaml`, `dampeml pipeline run RECIPE`)",
        "Steps of a training pipeline and the profiles that size them (docs/training.md).",
        RecipeFile,
    )
    lines += model_section(
        "Recipe step (each entry of a recipe's `steps`, and of a profile's `add_steps`)",
        "Merged in this order, later winning: the profile's `defaults`, the step, the profile's "
        "`steps.<name>`.",
        Step,
    )
    lines += model_section(
        "Ablation campaign (`campaigns/*.yaml`, `dampeml tune CAMPAIGN`)",
        "A Ray Tune search over network and training settings (docs/campaigns.md).",
        Campaign,
    )
    lines += model_section(
        "Chain settings (`--chain FILE.yaml` of `dampeml evaluate` and `reprocess`)",
        "The reconstruction chain's constants; a file names only those it changes (docs/reconstruction.md). "
        "Energies are deposited BGO energies in MeV; `.inf` is YAML's infinity.",
        ChainConfig,
    )
    lines += model_section(
        "Standard reconstruction (`--standard FILE.yaml` of `dampeml evaluate`)",
        "The baseline track finding and its standard selection's quality criteria; defaults: DAMPE's "
        "helium analysis (docs/reconstruction.md). Distances in mm, angles in radians.",
        StandardConfig,
    )
    lines += model_section(
        "Mission (`datasets/missions/*.yaml`, `dampeml simulate-mission MISSION`)",
        "A flight-like run of known composition, for closure tests of the flux (docs/physics.md).",
        Mission,
    )
    lines += command_section(root)
    return "\n".join(lines).rstrip() + "\n"


@clean_errors
def config_reference(
    ctx: typer.Context,
    out: Annotated[Path | None, typer.Option(help="write the page here (default: print it)")] = None,
) -> None:
    """Print (or write) the reference of every configuration field, generated from the code."""
    text = render(ctx.find_root().command)
    if out is None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    out.write_text(text)
    console.print(f"wrote {out}")
