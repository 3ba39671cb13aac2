"""The model zoo: export from one registry, import into another as data; the shipped zoo is whole."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from dampeml.registry.zoo import (
    INDEX,
    SHA_TAG,
    ZooError,
    chain_config,
    export_zoo,
    import_zoo,
    read_index,
    stale_note,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "zoo" / "reference"
LINEAGE = {
    "pipeline": "chain/reference",
    "recipe_hash": "abc123",
    "dataset_version": "d1",
    "git_commit": "f00",
}


def _store(mp: pytest.MonkeyPatch, d: Path) -> None:
    from dampeml.registry.bootstrap import ensure_experiment

    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    ensure_experiment(d / "artifacts")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Two models at @reference (seeded weights, lineage and test tags) exported to a zoo folder;
    a third at another alias that must stay out."""
    from dampeml.models.architecture import Architecture
    from dampeml.models.common import tf_keras
    from dampeml.registry.bootstrap import log_model

    d = tmp_path_factory.mktemp("zoo-source")
    mp = pytest.MonkeyPatch()
    _store(mp, d)
    tf_keras().utils.set_random_seed(11)
    models = {}
    for name, metric in (
        ("bgo-direction-low", {"test_mae": "4.5"}),
        ("electron-proton", {"test_auc": "0.97"}),
    ):
        arch = Architecture(name)
        models[name] = arch.build()
        log_model(arch, models[name], ["reference"], {**LINEAGE, **metric})
    log_model(Architecture("bgo-direction-mid"), Architecture("bgo-direction-mid").build(), ["production"])
    index = export_zoo("reference", d / "zoo", coarse_below_tev=float("inf"))
    mp.undo()
    yield d / "zoo", models, json.loads(index.read_text())


@pytest.mark.timeout(300)
def test_export_writes_the_alias_models_with_their_lineage(exported):
    folder, models, index = exported
    assert set(index["models"]) == set(models)  # bgo-direction-mid@production is not in it
    entry = index["models"]["bgo-direction-low"]
    assert entry["lineage"] == LINEAGE and entry["test"] == {"test_mae": 4.5}
    assert entry["architecture"]["network"] == "bgo-direction-low"
    assert (folder / entry["file"]).is_file() and len(entry["sha256"]) == 64
    assert stale_note(index, "retrain") is None
    assert chain_config(index).coarse_below_tev == float("inf")  # the setting they were trained for


@pytest.mark.timeout(300)
def test_export_of_named_models_leaves_the_others_out(exported, tmp_path, monkeypatch):
    """Two recipes that promoted to one alias in one registry: each zoo takes its own models; a name not
    at the alias is refused by name."""
    folder, _, _ = exported
    _store(monkeypatch, tmp_path)
    import_zoo(folder)
    index = json.loads(export_zoo("reference", tmp_path / "one", names=["electron-proton"]).read_text())
    assert set(index["models"]) == {"electron-proton"}
    assert sorted(p.name for p in (tmp_path / "one").glob("*.keras")) == ["electron-proton.keras"]
    with pytest.raises(ZooError, match="bgo-direction-mid has the alias 'reference'"):
        export_zoo("reference", tmp_path / "two", names=["electron-proton", "bgo-direction-mid"])
    with pytest.raises(ZooError, match="no model named to export"):
        export_zoo("reference", tmp_path / "three", names=[])


@pytest.mark.timeout(300)
def test_import_registers_the_same_weights_and_a_rerun_adds_nothing(exported, tmp_path, monkeypatch):
    from dampeml.registry.models import list_versions, safe_load_model

    folder, models, _ = exported
    _store(monkeypatch, tmp_path)  # another, empty registry
    first = import_zoo(folder)
    assert {(m.name, m.status) for m in first} == {
        ("bgo-direction-low", "imported"),
        ("electron-proton", "imported"),
    }
    for name, original in models.items():
        loaded = safe_load_model(f"models:/{name}@reference")
        for a, b in zip(original.get_weights(), loaded.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        tags = next(v for v in list_versions(name) if "reference" in v.aliases).tags
        assert tags["recipe_hash"] == "abc123" and tags[SHA_TAG]
    again = import_zoo(folder)
    assert {m.status for m in again} == {"current"}
    assert len(list_versions("bgo-direction-low")) == 1


@pytest.mark.timeout(300)
def test_a_changed_file_or_an_edited_config_is_refused(exported, tmp_path, monkeypatch):
    from dampeml.security import UnsafeModelError

    folder, _, index = exported
    _store(monkeypatch, tmp_path / "store")
    bad = tmp_path / "zoo"
    shutil.copytree(folder, bad)
    target = bad / "bgo-direction-low.keras"
    target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(ZooError, match=r"bgo-direction-low.*sha256 differs"):
        import_zoo(bad)
    # a config.json naming an op layer, with the index's checksum updated to match: still refused
    shutil.copyfile(folder / "bgo-direction-low.keras", target)
    with zipfile.ZipFile(folder / "bgo-direction-low.keras") as z:
        parts = {n: z.read(n) for n in z.namelist()}
    config = json.loads(parts["config.json"])
    config["config"]["layers"].append(
        {"class_name": "TensorFlowOpLayer", "config": {"node_def": {"op": "Save"}}}
    )
    parts["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as z:
        for n, data in parts.items():
            z.writestr(n, data)
    import hashlib

    edited = json.loads((bad / INDEX).read_text())
    edited["models"]["bgo-direction-low"]["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    (bad / INDEX).write_text(json.dumps(edited))
    with pytest.raises(UnsafeModelError, match="TensorFlowOpLayer"):
        import_zoo(bad)
    # a file name that climbs out of the folder
    edited["models"]["bgo-direction-low"]["file"] = "../outside.keras"
    (bad / INDEX).write_text(json.dumps(edited))
    with pytest.raises(ValueError, match=r"\.\."):
        import_zoo(bad)
    assert "stale" in stale_note({**index, "simulation_version": "0.1"}, "dampeml pipeline run X")


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("reference", {"bgo-direction-low", "bgo-direction-mid", "bgo-direction-high", "stk-hough-coarse",
                       "stk-hough-precise", "inelastic-raw-stk", "inelastic-hough", "electron-proton"}),
        ("electron-flux", {"electron-proton", "electron-proton-cnn", "electron-proton-dnn", "bgo-energy"}),
    ],
)  # fmt: skip
def test_the_shipped_zoos_are_whole_and_load_as_data(folder, expected):
    """Every model of a shipped zoo (the chain's, the electron flux's): its file matches the index,
    rebuilds from its record, and the weights load; the index records where each came from."""
    from dampeml.models.architecture import Architecture
    from dampeml.security import check_config_matches, keras_file_config, load_weights_only

    zoo = SHIPPED.parent / folder
    index = read_index(zoo)
    assert index["alias"] == "reference" and chain_config(index).coarse_below_tev > 0
    assert set(index["models"]) == expected
    total = 0
    for name, entry in index["models"].items():
        path = zoo / entry["file"]
        total += path.stat().st_size
        import hashlib

        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], name
        for key in ("pipeline", "recipe_hash", "step_key", "dataset_version", "git_commit"):
            assert entry["lineage"].get(key), f"{name} lacks lineage {key}"
        assert entry["test"], f"{name} has no test metrics"
        model = Architecture.from_json(json.dumps(entry["architecture"]), name).build()
        check_config_matches(keras_file_config(path), model, name)
        load_weights_only(model, path, name)
    recipe = yaml.safe_load((zoo / "recipe.resolved.yaml").read_text())  # the recipe that trains them all
    assert expected <= {step["network"] for step in recipe["steps"].values()}, recipe["name"]
    print(f"\nzoo/{folder}: {len(expected)} models, {total / 1e6:.2f} MB")
    assert total < 20e6
