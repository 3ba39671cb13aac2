"""Model configs: frozen dataclasses, one per architecture family, loadable from a dict or YAML.

Every architectural choice of a network is a field, so an ablation (filter shape, dropout,
widths, Hough channels) is a config override, never a code change. `from_dict` is strict:
an unknown key or a value of the wrong type raises :class:`ConfigError` naming the config,
the field, and the known fields (with a close match when there is one). YAML lists become
tuples, so a config read back from YAML equals the one written.

This module and the configs import no TensorFlow: the catalog can be queried (e.g. to check a
training request before Ray starts) without paying for the TensorFlow import.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml

from dampeml.errors import InputError

#: The paper's optimiser: Adam in its default configuration, initial learning rate 1e-4.
PAPER_LEARNING_RATE = 1e-4

Task = Literal["regression", "classification"]


class ConfigError(InputError):
    """A model config that cannot be used: unknown key, wrong type or out-of-range value."""


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` checked against (and, for YAML lists, converted to) the field's type `hint`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: expected {_type_name(hint)}, got {value!r}"
        )
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {list(value)!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported config field type {hint!r}")  # a bug in a config class


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively: the YAML/JSON form of a config value."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Fields shared by every family; subclasses add the architecture and set `family`."""

    family: ClassVar[str] = ""
    learning_rate: float = PAPER_LEARNING_RATE

    def __post_init__(self) -> None:
        # Coerce field values passed directly to the constructor too (lists -> tuples, ints -> floats),
        # so `Config(kernel_size=[3, 5])` and `Config.from_dict(...)` give equal objects.
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _coerce(getattr(self, f.name), hints[f.name], f"{type(self).__name__}.{f.name}")
            object.__setattr__(self, f.name, value)
        if not self.learning_rate > 0:
            raise ConfigError(f"{type(self).__name__}.learning_rate must be > 0, got {self.learning_rate}")
        self.validate()

    def validate(self) -> None:
        """Family-specific range checks; raise ConfigError."""

    @property
    def task(self) -> Task:
        raise NotImplementedError

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def _check_keys(cls, keys) -> None:
        known = cls.field_names()
        unknown = [k for k in keys if k not in known]
        if unknown:
            hints = []
            for k in unknown:
                close = difflib.get_close_matches(str(k), known, n=1)
                hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(
                f"{cls.__name__}: unknown config key(s) {', '.join(hints)}; known keys: {', '.join(known)}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Self:
        """A config from a mapping (e.g. parsed YAML); missing keys take their defaults."""
        data = dict(data or {})
        cls._check_keys(data)
        return cls(**data)

    @classmethod
    def from_yaml(cls, source: str | Path) -> Self:
        """A config from a YAML file path or a YAML text holding one mapping."""
        text = (
            Path(source).read_text()
            if isinstance(source, Path) or str(source).endswith((".yaml", ".yml"))
            else source
        )
        raw = yaml.safe_load(text)
        if raw is not None and not isinstance(raw, Mapping):
            raise ConfigError(f"{cls.__name__}: a config is a YAML mapping, got {type(raw).__name__}")
        return cls.from_dict(raw)

    def to_dict(self) -> dict[str, Any]:
        """Plain (YAML/JSON-ready) values; `from_dict(to_dict())` gives an equal config."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, overrides: Mapping[str, Any] | None = None, **changes: Any) -> Self:
        """A copy with some fields changed; unknown keys raise ConfigError like `from_dict`."""
        changes = {**dict(overrides or {}), **changes}
        self._check_keys(changes)
        return dataclasses.replace(self, **changes)


def check_positive(config: ModelConfig, **values: Any) -> None:
    """ConfigError unless every given value (or every item of a given tuple) is > 0."""
    for name, value in values.items():
        items = value if isinstance(value, tuple) else (value,)
        flat = [v for item in items for v in (item if isinstance(item, tuple) else (item,))]
        if not all(v > 0 for v in flat):
            raise ConfigError(f"{type(config).__name__}.{name}: every value must be > 0, got {_plain(value)}")


def check_fraction(config: ModelConfig, **values: float) -> None:
    """ConfigError unless 0 <= value < 1 (dropout rates)."""
    for name, value in values.items():
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{type(config).__name__}.{name}: must be in [0, 1), got {value}")


def check_indices(config: ModelConfig, name: str, indices: tuple[int, ...], n: int) -> None:
    """ConfigError unless every index is in range(n)."""
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ConfigError(f"{type(config).__name__}.{name}: indices {bad} out of range for {n} layers")
