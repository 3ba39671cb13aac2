"""Property tests of the config loaders (issue 19, "And beyond the list"): whatever a user, a campaign
file or a registry tag hands them, they answer with a valid object or their own validation error,
never another exception (a KeyError, TypeError or OverflowError would escape the CLI's one-line
errors as a traceback). The storage-root path checks have theirs in tests/test_security.py.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dampeml.models.architecture import _KEYS, Architecture, ArchitectureError
from dampeml.models.bgo_cnn import BgoCnnConfig
from dampeml.models.catalog import NETWORK_NAMES, UnknownNetworkError
from dampeml.models.config import ConfigError
from dampeml.models.hamf import HamfConfig
from dampeml.models.hough_cnn import HoughCnnConfig
from dampeml.models.raw_stk_cnn import RawStkCnnConfig

pytestmark = pytest.mark.timeout(300)
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON/YAML-like values, odd ones included: huge integers, NaN and infinities, nesting
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def mappings(known: list[str]) -> st.SearchStrategy[dict]:
    """Mappings whose keys are mostly real field names (so values reach the field checks)."""
    keys = st.sampled_from(known) | st.text(max_size=10)
    return st.dictionaries(keys, values, max_size=6)


CONFIGS = [BgoCnnConfig, HamfConfig, HoughCnnConfig, RawStkCnnConfig]


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_a_model_config_from_any_mapping_is_valid_or_a_config_error(cls):
    @SETTINGS
    @given(data=mappings(cls.field_names()))
    def check(data):
        try:
            config = cls.from_dict(data)
        except ConfigError:
            return
        assert cls.from_dict(config.to_dict()) == config  # what is accepted round-trips

    check()


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_a_config_key_that_is_no_field_is_always_refused(cls):
    @SETTINGS
    @given(key=st.text(max_size=12).filter(lambda k: k not in cls.field_names()), value=values)
    def check(key, value):
        with pytest.raises(ConfigError, match="unknown config key"):
            cls.from_dict({key: value})

    check()


SPEC_FIELDS = ["name", "kind", "description", "sources", "selection", "features", "targets", "roi", "split"]
SPEC_FIELDS += ["max_quarantine_fraction"]
source = st.fixed_dictionaries(
    {"type": st.sampled_from(["files", "simulation", "other"])},
    optional={"glob": values, "particles": values, "events_per_unit": values, "seed": values, "mode": values},
)
spec_values = {
    "name": st.sampled_from(["ok-name", "Bad Name", "../x", ""]) | values,
    "kind": st.sampled_from(["bgo-direction", "stk-hough", "electron-proton", "nope"]) | values,
    "sources": st.lists(source, max_size=2) | values,
    "features": st.lists(st.sampled_from(["bgo_image", "hough_hits", "nope"]), max_size=3) | values,
    "targets": st.lists(st.sampled_from(["track", "particle", "nope"]), max_size=3) | values,
    "split": st.fixed_dictionaries({}, optional={k: values for k in ("train", "val", "test")}) | values,
}


@st.composite
def spec_mappings(draw):
    keys = draw(st.lists(st.sampled_from(SPEC_FIELDS) | st.text(max_size=8), max_size=8, unique=True))
    return {k: draw(spec_values.get(k, values)) for k in keys}


def test_a_dataset_spec_from_any_mapping_loads_or_is_a_spec_error(tmp_path_factory):
    from dampeml.datasets.spec import DatasetSpec, SpecError, load_spec

    path = tmp_path_factory.mktemp("specs") / "spec.yaml"

    @SETTINGS
    @given(raw=spec_mappings())
    def check(raw):
        path.write_text(yaml.safe_dump(raw))
        try:
            spec = load_spec(path)
        except SpecError as exc:
            assert str(path) in str(exc)  # the error names the file
            return
        assert isinstance(spec, DatasetSpec) and spec.spec_hash()

    check()


def test_a_dataset_spec_that_is_no_mapping_is_a_spec_error(tmp_path_factory):
    from dampeml.datasets.spec import SpecError, load_spec

    path = tmp_path_factory.mktemp("specs") / "spec.yaml"

    @SETTINGS
    @given(text=st.text(max_size=40) | values.map(yaml.safe_dump))
    def check(text):
        path.write_text(text)
        try:
            load_spec(path)
        except SpecError:
            return
        raise AssertionError(f"accepted as a dataset spec: {text!r}")  # no text of these is a whole spec

    check()


architecture_objects = st.fixed_dictionaries(
    {},
    optional={
        "network": st.sampled_from(NETWORK_NAMES) | values,
        "preset": st.sampled_from(["small", "full", "huge"]) | values,
        "overrides": st.dictionaries(st.sampled_from(["kernel_size", "dropout", "filters", "nope"]), values)
        | values,
        "alignment_head": values,
    },
) | st.dictionaries(st.sampled_from(list(_KEYS)) | st.text(max_size=8), values, max_size=5)


def _json(value) -> str:
    return json.dumps(value, allow_nan=True)


@SETTINGS
@given(text=st.one_of(st.none(), st.text(max_size=60), values.map(_json), architecture_objects.map(_json)))
def test_an_architecture_record_from_any_text_is_buildable_or_an_architecture_error(text):
    try:
        arch = Architecture.from_json(text, "models:/x/1")
    except (ArchitectureError, UnknownNetworkError) as exc:
        assert "models:/x/1" in str(exc)  # the error names the model version
        return
    assert arch.network in NETWORK_NAMES
    again = Architecture.from_json(arch.to_json(), "models:/x/1")  # what is accepted round-trips
    assert again.to_json() == arch.to_json()
    assert not any(
        isinstance(v, float) and not math.isfinite(v)
        for v in json.loads(arch.to_json())["overrides"].values()
    )
