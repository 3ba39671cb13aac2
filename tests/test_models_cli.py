"""`dampeml models list/show/promote` on a private registry: what they print and what they change."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dampeml.cli.main import app

NAME = "bgo-direction-low"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """bgo-direction-low v1 (test_mae 5.0, @production), v2 (3.0, better), v3 (9.0, worse);
    electron-proton v1 (test_auc 0.9, no alias). Small untrained networks: only the tags matter."""
    from dampeml.models.architecture import Architecture
    from dampeml.models.common import tf_keras
    from dampeml.registry.bootstrap import ensure_experiment, log_model

    d = tmp_path_factory.mktemp("models-cli")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    ensure_experiment(d / "artifacts")
    tf_keras().utils.set_random_seed(3)
    bgo, ep = Architecture(NAME), Architecture("electron-proton")
    model = bgo.build()
    for mae, aliases in (("5.0", ("production",)), ("3.0", ()), ("9.0", ())):
        log_model(bgo, model, aliases, tags={"test_mae": mae})
    log_model(ep, ep.build(), (), {"test_auc": "0.9"})
    yield d
    mp.undo()


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, ["models", *args], env={"COLUMNS": "200"})
    return r.exit_code, r.output


def _rows(out: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(model, version) -> (aliases, metrics) of its row in rich's box table."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) >= 4 and cells[1].isdigit():
            rows[(cells[0], cells[1])] = (cells[2], cells[3])
    return rows


@pytest.mark.timeout(300)
def test_list_and_show_print_every_version_with_its_aliases_and_metrics(registry):
    code, out = _run("list")
    print(out)
    assert code == 0 and "Traceback" not in out
    rows = _rows(out)
    assert set(rows) == {(NAME, "1"), (NAME, "2"), (NAME, "3"), ("electron-proton", "1")}
    assert rows[(NAME, "1")] == ("production", "test_mae=5")
    assert rows[(NAME, "2")] == ("", "test_mae=3") and rows[(NAME, "3")] == ("", "test_mae=9")
    assert rows[("electron-proton", "1")] == ("", "test_auc=0.9")

    code, out = _run("show", NAME)
    assert code == 0 and set(_rows(out)) == {(NAME, "1"), (NAME, "2"), (NAME, "3")}


@pytest.mark.timeout(300)
def test_promote_moves_the_alias_to_a_better_version_and_refuses_a_worse_one(registry):
    from dampeml.registry.models import version_of

    code, out = _run("promote", NAME, "2")
    print(out)
    assert code == 0 and f"{NAME} version 2 is now @production" in out
    assert version_of(NAME, "production") == "2"
    code, out = _run("promote", NAME, "3")
    assert code != 0 and "worse than @production" in " ".join(out.split()) and "Traceback" not in out
    assert version_of(NAME, "production") == "2"
    # a new alias has no holder to compare with; --force overrides the comparison
    code, out = _run("promote", NAME, "3", "--alias", "staging")
    assert code == 0 and version_of(NAME, "staging") == "3"
    code, out = _run("promote", NAME, "3", "--force")
    assert code == 0 and version_of(NAME, "production") == "3"
    code, out = _run("show", NAME)
    rows = _rows(out)
    assert sorted(rows[(NAME, "3")][0].split(",")) == ["production", "staging"] and rows[(NAME, "2")][0] == ""


@pytest.mark.timeout(300)
def test_versions_tested_on_other_dataset_specs_are_not_compared(registry):
    """A test MAE of another spec's test split says nothing about which model is better (the
    reference pipeline's Hough networks moved to specs of every deposited energy)."""
    import mlflow

    from dampeml.models.architecture import Architecture
    from dampeml.registry.bootstrap import log_model
    from dampeml.registry.models import version_of

    bgo = Architecture(NAME)
    old = log_model(bgo, bgo.build(), ["holder"], tags={"test_mae": "1.0", "dataset_spec_hash": "aaaa"})
    same = log_model(bgo, bgo.build(), [], tags={"test_mae": "7.0", "dataset_spec_hash": "aaaa"})
    other = log_model(bgo, bgo.build(), [], tags={"test_mae": "7.0", "dataset_spec_hash": "bbbb"})
    code, out = _run("promote", NAME, same, "--alias", "holder")
    assert code != 0 and "worse than @holder" in " ".join(out.split())  # same spec: compared, refused
    code, out = _run("promote", NAME, other, "--alias", "holder")
    text = " ".join(out.split())
    assert code == 0 and f"not compared with v{old}: its test split is of another dataset spec" in text
    assert version_of(NAME, "holder") == other
    mlflow.MlflowClient().delete_registered_model_alias(NAME, "holder")


@pytest.mark.timeout(120)
def test_list_of_an_empty_registry_says_how_to_fill_it(tmp_path, monkeypatch):
    from dampeml.registry.bootstrap import ensure_experiment

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    ensure_experiment(tmp_path / "artifacts")
    code, out = _run("list")
    assert code == 0 and "no registered models yet" in out and "dampeml train" in out
