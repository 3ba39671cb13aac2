"""What a registered model is, as data: catalog network, preset, overrides, alignment head.

A model file can hold code: Keras rebuilds every layer named in its `config.json`, and some
layers (`Lambda`, `TFOpLambda`, `TensorFlowOpLayer`) run Python or TensorFlow ops chosen by
whoever wrote the file. A deny-list of such layers is never complete. So the registry keeps,
beside every version, this small record of how the project's own builders make the network;
the loader rebuilds the model from it and reads only tensors (the weights) from the artifact
(:func:`dampeml.registry.models.safe_load_model`). Nothing in an artifact chooses code to run.

The record is a model-version tag, ``architecture``, holding JSON such as
``{"network": "bgo-direction-low", "preset": "small", "overrides": {}, "alignment_head": false}``;
:meth:`Architecture.from_json` validates it as strictly as a dataset spec (catalog name,
preset, each override a typed field of the family's config).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dampeml.errors import InputError
from dampeml.models.bgo_cnn import with_alignment_head
from dampeml.models.catalog import ALIGNED_SUFFIX, PRESETS, Preset, aligned_name, get_network
from dampeml.models.config import ConfigError

#: The model-version tag that holds an :class:`Architecture` as JSON.
ARCHITECTURE_TAG = "architecture"
_KEYS = ("network", "preset", "overrides", "alignment_head")


class ArchitectureError(InputError):
    """An architecture record that is missing, malformed or names no buildable network."""


@dataclass(frozen=True)
class Architecture:
    network: str  # a catalog network name
    preset: Preset = "small"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    alignment_head: bool = False  # the BGO data/MC alignment model built on `network`

    def __post_init__(self) -> None:
        spec = get_network(self.network)  # UnknownNetworkError names the known networks
        if self.preset not in PRESETS:
            raise ArchitectureError(f"unknown preset {self.preset!r}: use one of {list(PRESETS)}")
        if not isinstance(self.overrides, Mapping):
            raise ArchitectureError(f"overrides must be a mapping of config fields, got {self.overrides!r}")
        spec.config_for(self.preset, self.overrides)  # ConfigError names an unknown or mistyped field
        if self.alignment_head:
            aligned_name(self.network)  # only the BGO direction networks have one

    @property
    def registered_name(self) -> str:
        """The registry name a model of this architecture is registered under."""
        return self.network + ALIGNED_SUFFIX if self.alignment_head else self.network

    def build(self) -> Any:
        """The uncompiled tf-keras model, from the project's builders only (fresh weights)."""

        model = get_network(self.network).build(self.preset, dict(self.overrides), compile=False)
        return with_alignment_head(model, compile=False) if self.alignment_head else model

    def to_json(self) -> str:
        config = get_network(self.network).config_for(self.preset, self.overrides)
        overrides = {k: config.to_dict()[k] for k in self.overrides}  # plain JSON values
        return json.dumps(
            {"network": self.network, "preset": self.preset, "overrides": overrides,
             "alignment_head": self.alignment_head},
            sort_keys=True,
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str | None, where: str) -> Architecture:
        """The record of `where` (e.g. 'models:/NAME/3'); ArchitectureError saying what is wrong."""
        if not text:
            raise ArchitectureError(
                f"{where} has no '{ARCHITECTURE_TAG}' tag: it was registered before the registry "
                "recorded how each model is built, and its file cannot be loaded safely without it. "
                "Train and register it again (`dampeml train ...`, or `dampeml demo` for the demo's models), "
                "then point the alias at the new version (`dampeml models promote NAME VERSION --alias "
                "ALIAS --force`: the gate would compare it with this unloadable one)"
            )
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ArchitectureError(f"{where}: its '{ARCHITECTURE_TAG}' tag is not JSON ({exc})") from None
        if not isinstance(data, dict) or set(data) - set(_KEYS) or "network" not in data:
            raise ArchitectureError(
                f"{where}: its '{ARCHITECTURE_TAG}' tag must be a JSON object with keys {list(_KEYS)}, "
                f"got {text[:200]!r}"
            )
        try:
            return cls(
                network=data["network"],
                preset=data.get("preset", "small"),
                overrides=data.get("overrides") or {},
                alignment_head=data.get("alignment_head", False) is True,
            )
        except (ConfigError, ValueError, TypeError) as exc:
            raise ArchitectureError(
                f"{where}: its '{ARCHITECTURE_TAG}' tag names no buildable model: {exc}"
            ) from None


def check_same_weights_layout(model: Any, architecture: Architecture, where: str) -> None:
    """Refuse to register `model` under `architecture` unless rebuilding gives the same weight shapes.

    Caught at registration, a mislabelled model would otherwise only fail when loaded.
    """
    expected = [tuple(w.shape) for w in architecture.build().weights]
    actual = [tuple(w.shape) for w in model.weights]
    if expected != actual:
        raise ArchitectureError(
            f"{where}: the model does not match its architecture {architecture.to_json()} "
            f"({len(actual)} weights, expected {len(expected)}; first shapes {actual[:3]} vs {expected[:3]})"
        )
