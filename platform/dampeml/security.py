"""Checks at the platform's edges: storage locations, model URIs, artifact paths, model files.

Jobs on a shared cluster take paths and URIs from dataset specs, campaign files and command
lines; each is checked against the allowed storage roots before anything is read or written.
Model files can carry code (Keras layers such as `Lambda` or `TensorFlowOpLayer` run what the
file names, MLflow models can ship pickles and `code/` directories), so registry models are
loaded only through `dampeml.registry.models.safe_load_model` (with the checks here), which
rebuilds the network with the project's own builders and reads nothing but weights from the artifact.

Allowed storage: `DAMPEML_ALLOWED_STORAGE`, a comma-separated list of roots (local paths or
URIs such as `s3://bucket/prefix`). Unset, nothing is restricted (one machine, one user); the
cluster sets it (cluster.yaml). Local paths are compared after resolving `..` and symlinks;
a glob as written and every file it matches must be under a root (`..` after a wildcard is refused).
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import posixpath
import re
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from dampeml.errors import InputError

ALLOWED_STORAGE_VAR = "DAMPEML_ALLOWED_STORAGE"
GLOB_CHARS = re.compile(r"[*?\[]")


class StorageNotAllowedError(InputError, PermissionError):
    """A path or URI outside the allowed storage roots; the message names both."""


class UnsafeModelError(InputError, RuntimeError):
    """A model artifact that could run code when loaded (Lambda layer, pickle, bundled code)."""


class ArtifactPathError(InputError):
    """An artifact path that would escape its artifact directory."""


# ---- storage roots


def allowed_roots(roots: Iterable[str] | None = None) -> list[str] | None:
    """The allowed roots, normalised; None when unrestricted (DAMPEML_ALLOWED_STORAGE unset)."""
    if roots is None:
        raw = os.environ.get(ALLOWED_STORAGE_VAR, "").strip()
        if not raw:
            return None
        roots = [r for r in raw.split(",") if r.strip()]
    return [_normalise(os.path.expanduser(r.strip()), what="allowed root") for r in roots]


def _split_at_glob(path: str) -> tuple[list[str], list[str]]:
    """`path`'s components before the first holding a wildcard, and the rest (glob works per component)."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if GLOB_CHARS.search(part):
            return parts[:i], parts[i:]
    return parts, []


def _local_path(location: str, what: str = "location") -> str | None:
    """The local path `location` names as the readers and writers open it; None for a remote URI.

    No `~` expansion: Typer, open() and pyarrow take `~/x` as a folder named `~`, so must this check.
    """
    parts = urlsplit(location)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StorageNotAllowedError(
                f"{what} {location!r} names a host ({parts.netloc}); use file:///PATH"
            )
        return unquote(parts.path)
    if parts.scheme == "" or len(parts.scheme) == 1:  # a local path (or C:\ on Windows)
        return location
    return None


def _refuse_dotdot_after_glob(pattern: list[str], location: str, what: str) -> None:
    # `ROOT/*/../../x`: what `..` climbs out of depends on what `*` matches (a link, say), so the
    # pattern cannot be judged by its text. Wildcards after the last `..` are fine.
    if ".." in pattern:
        raise StorageNotAllowedError(
            f"{what} {location!r} has '..' after a wildcard: name the directory directly "
            "(put every '..' before the first '*', '?' or '[')"
        )


def _normalise(location: str, what: str) -> str:
    """`scheme://netloc/path` with `.` and `..` resolved; local paths absolute and real.

    A glob is resolved up to its first wildcard component (links and `..` included) and kept as
    written after it; `..` after a wildcard is refused. Its matches are checked by check_storage.
    """
    if "\x00" in location:
        raise StorageNotAllowedError(f"{what} {location!r} contains a NUL byte")
    path = _local_path(location, what)
    if path is not None:
        literal, pattern = _split_at_glob(path)
        _refuse_dotdot_after_glob(pattern, location, what)
        prefix = "/".join(literal) or ("/" if path.startswith("/") else ".")
        real = os.path.realpath(prefix)
        tail = [p for p in pattern if p not in ("", ".")]
        return "/".join([real.rstrip("/"), *tail]).rstrip("/") or "/"
    parts = urlsplit(location)
    path = unquote(parts.path)
    if ".." in path.split("/"):
        raise StorageNotAllowedError(f"{what} {location!r} contains '..': name the location directly")
    clean = posixpath.normpath("/" + path.lstrip("/")) if path.strip("/") else "/"
    return f"{parts.scheme}://{parts.netloc}{clean.rstrip('/')}"


def _under(location: str, root: str) -> bool:
    if location == root:
        return True
    return location.startswith(root.rstrip("/") + "/")


def _outside(subject: str, allowed: list[str]) -> StorageNotAllowedError:
    return StorageNotAllowedError(
        f"{subject} is outside the allowed storage "
        f"({', '.join(allowed)}); use a location under one of them, or ask the cluster admin to "
        f"add its root to {ALLOWED_STORAGE_VAR}"
    )


def check_storage(
    location: str | os.PathLike, what: str = "location", roots: Iterable[str] | None = None
) -> str:
    """Refuse `location` (path, URI or glob) outside the allowed roots; return it unchanged.

    A local glob must lie under a root as written, and so must every file it matches now, after
    resolving links (`ROOT/*/x` through a link `ROOT/l -> /etc`). `what` names it in the error
    (e.g. "--out", "dataset spec sources[0].glob").
    """
    location = os.fspath(location)
    allowed = allowed_roots(roots)
    if allowed is None:
        return location
    norm = _normalise(location, what)
    if not any(_under(norm, r) for r in allowed):
        raise _outside(f"{what} {location!r} (resolved: {norm})", allowed)
    path = _local_path(location, what)
    if path is not None and glob.has_magic(path):
        # a writer opens the pattern literally (a folder named `*` may exist), a reader its matches
        for match in itertools.chain([path], glob.iglob(path)):
            real = os.path.realpath(match)
            if not any(_under(real, r) for r in allowed):
                raise _outside(f"{what} {location!r} reaches {match} (resolved: {real}), which", allowed)
    return location


def check_spec_storage(spec: Any, spec_path: str | os.PathLike | None = None) -> None:
    """Every file source of a dataset spec (a DatasetSpec) must be under the allowed roots."""
    where = f"dataset spec {os.fspath(spec_path)}" if spec_path else f"dataset spec {spec.name}"
    for i, source in enumerate(spec.sources):
        glob = getattr(source, "glob", None)
        if glob is not None:
            check_storage(glob, what=f"{where}: sources[{i}].glob")


def check_job_paths(**locations: str | os.PathLike | None) -> None:
    """Check a job's path arguments by name (`check_job_paths(out=..., dataset=...)`); None skipped."""
    for name, loc in locations.items():
        if loc is not None:
            check_storage(loc, what=f"--{name.replace('_', '-')}")


# ---- artifact paths


def check_artifact_path(path: str) -> str:
    """A relative artifact path that stays inside its artifact directory; returned normalised."""
    decoded = unquote(unquote(path))  # catch %2e%2e and a doubly encoded %252e
    if not path or "\x00" in decoded or "\\" in decoded:
        raise ArtifactPathError(f"artifact path {path!r} is empty or has NUL/backslash characters")
    if decoded.startswith("/") or re.match(r"^[A-Za-z]:", decoded) or urlsplit(decoded).scheme:
        raise ArtifactPathError(f"artifact path {path!r} must be relative to the artifact directory")
    if ".." in decoded.split("/"):
        raise ArtifactPathError(f"artifact path {path!r} leaves the artifact directory ('..')")
    return posixpath.normpath(decoded)


def check_artifact_tree(root: str | os.PathLike) -> None:
    """No file of a downloaded artifact is a link leading outside it."""
    root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p) and not _under(os.path.realpath(p), root):
                raise UnsafeModelError(f"{p} links outside the model artifact ({os.readlink(p)})")


# ---- models

#: A registry alias: what MLflow accepts (it also reserves 'latest' and 'v<N>'), and nothing that
#: reads as a path.
ALIAS_RE = r"[A-Za-z0-9_-]{1,255}"


def check_alias(alias: str, what: str = "--alias") -> str:
    """Refuse an alias MLflow would refuse (with a traceback, after other work); return it."""
    if (
        not re.fullmatch(ALIAS_RE, alias or "")
        or alias.lower() == "latest"
        or re.fullmatch(r"[vV]\d+", alias)
    ):
        raise InputError(
            f"{what} {alias!r} is not a registry alias: use letters, digits, '_' and '-' (e.g. production, "
            "staging); 'latest' and 'v<N>' are reserved"
        )
    return alias


# MLflow files that are unpickled or put on sys.path by MLflow's own loader (never by ours).
PICKLE_SUFFIXES = (".pkl", ".pickle", ".cloudpickle", ".joblib")
IGNORED_PICKLE = "global_custom_objects.cloudpickle"  # written by MLflow for every tf-keras model


def keras_file_config(path: str | os.PathLike) -> Any:
    """The model config inside a Keras v3 `.keras` file (a zip holding config.json), as plain JSON."""

    try:
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("config.json"))
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as exc:
        raise UnsafeModelError(f"{path}: not a readable Keras v3 model file ({exc}); refused") from None


def layer_classes(config: Any) -> list[str]:
    """Every `class_name` in a Keras model config, sorted: what the file would make Keras build.

    Only the model and its layers: the compile settings (optimizer, losses) of a trained model
    are not part of the architecture, and nothing of them is built by the loader.
    """
    if isinstance(config, dict) and "compile_config" in config:
        config = {k: v for k, v in config.items() if k != "compile_config"}
    names, stack = [], [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("class_name"), str):
                names.append(node["class_name"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(names)


def check_config_matches(file_config: Any, model: Any, where: str) -> None:
    """Refuse an artifact whose config.json names other layers than the registered architecture has.

    The config is never deserialized (the model is rebuilt by our builders); a difference means
    the file was edited or registered under the wrong architecture, and says which classes differ.
    """

    import tf_keras as keras

    expected = Counter(layer_classes(json.loads(json.dumps(keras.saving.serialize_keras_object(model)))))
    found = Counter(layer_classes(file_config))
    if expected != found:
        extra = sorted((found - expected).elements())
        missing = sorted((expected - found).elements())
        raise UnsafeModelError(
            f"{where}: the model file's config.json does not describe the registered architecture "
            f"(unexpected classes {extra[:5]}, missing {missing[:5]}); refused. Its weights were not "
            "read and nothing from it was built. Register the model again from trusted code"
        )


def audit_model_dir(local: str | os.PathLike) -> Path:
    """Inspect a downloaded MLflow tf-keras model; return its `.keras` file. Refuses pickles,
    bundled code, links out of the artifact, other flavors and formats."""

    local = Path(local)
    check_artifact_tree(local)
    mlmodel = local / "MLmodel"
    if not mlmodel.exists():
        raise UnsafeModelError(f"{local}: no MLmodel file; not an MLflow model")
    conf = yaml.safe_load(mlmodel.read_text()) or {}
    flavors = conf.get("flavors") or {}
    flavor = flavors.get("tensorflow") or flavors.get("keras")
    if not flavor or flavor.get("model_type", "keras") != "keras":
        raise UnsafeModelError(f"{local}: not a tf-keras model (flavors: {sorted(flavors)}); refused")
    if flavor.get("code") or any((f or {}).get("code") for f in flavors.values() if isinstance(f, dict)):
        raise UnsafeModelError(f"{local}: the model bundles code directories (put on sys.path); refused")
    if flavor.get("keras_module", "tensorflow.keras") not in ("tensorflow.keras", "tf_keras", "keras"):
        raise UnsafeModelError(f"{local}: keras_module {flavor.get('keras_module')!r}; refused")
    # MLflow writes Keras' global custom-object registry as a pickle beside every tf-keras model and
    # its own loader unpickles it (MLFLOW_ALLOW_PICKLE_DESERIALIZATION defaults to true): this
    # loader never reads it. Any other pickle means the model needs pickled code: refused.
    pickles = [p for p in local.rglob("*") if p.name.endswith(PICKLE_SUFFIXES) and p.name != IGNORED_PICKLE]
    if pickles:
        raise UnsafeModelError(f"{local}: pickled files {[p.name for p in pickles]} (code on load); refused")
    data = local / check_artifact_path(flavor.get("data", "data"))
    path = data / "model.keras"
    if not path.is_file():
        others = sorted(p.name for p in data.iterdir()) if data.is_dir() else []
        raise UnsafeModelError(
            f"{local}: no data/model.keras (found {others}); only the Keras v3 format is loaded "
            "(its weights are plain tensors; a SavedModel or HDF5 file holds graphs and code)"
        )
    return path


def load_weights_only(model: Any, path: str | os.PathLike, where: str) -> None:
    """Read the weights (tensors, from the file's model.weights.h5) into `model`, built by our code.

    tf-keras reads them by the model's own structure and raises when a variable is missing or
    has another shape: a file for another architecture is refused, not half-loaded.
    """
    try:
        model.load_weights(os.fspath(path))
    except (ValueError, KeyError, OSError) as exc:
        raise UnsafeModelError(
            f"{where}: its weights do not fit the registered architecture "
            f"({str(exc).splitlines()[0][:300]}); refused. Register the model again from trusted code"
        ) from None
