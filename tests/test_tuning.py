"""Ablation campaigns: Ray Tune trials that are Ray Train runs, MLflow parent/child runs, resume after a
kill, and clear errors for bad campaign files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dampeml.cli.main import app
from dampeml.tuning.campaign import CampaignError, load_campaign
from tests.conftest import registered_epoch

REPO = Path(__file__).resolve().parents[1]
BGO_SPEC = str(REPO / "datasets" / "bgo-direction-low-small.yaml")
TINY = {  # a campaign small enough for CI: 600 events, 1 worker per trial, a few steps
    "network": "bgo-direction-low",
    "dataset": BGO_SPEC,
    "limit_events": 600,
    "metric": "val_loss",
    "compare": ["test_angle68_deg"],
    "epochs": 2,
    "steps_per_epoch": 3,
    "batch_per_worker": 8,
}

pytestmark = pytest.mark.usefixtures("ray_idle")  # each test starts on an idle Ray (conftest)


def _write(tmp: Path, name: str, **fields) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, **TINY, **fields}))
    return path


# ---- bad campaign files (no Ray) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"search_space": {"model.dropout": {"grid": [0.1]}}, "epochz": 3}, "epochz: Extra inputs"),
        ({"search_space": {}}, "search_space: Dictionary should have at least 1 item"),
        (
            {"network": "bgo-direction-huge", "search_space": {"model.dropout": {"grid": [0.1]}}},
            "unknown network 'bgo-direction-huge'",
        ),
        ({"search_space": {"model.kernel_sise": {"grid": [[3, 5]]}}}, "did you mean 'kernel_size'"),
        ({"search_space": {"model.dropout": {"grid": [1.5]}}}, "search_space.model.dropout: value 1.5"),
        (
            {"search_space": {"dataset.selection.electron_fractoin": {"grid": [0.1]}}},
            "no field 'electron_fractoin'",
        ),
        (
            {"search_space": {"dataset.selection.electron_fraction": {"uniform": [0.0, 0.5]}}},
            "dataset fields need grid or choice",
        ),
        ({"search_space": {"model.dropout": {"grid": [0.1], "uniform": [0, 1]}}}, "exactly one of"),
        (
            {"search_space": {"model.learning_rate": {"grid": [0.001]}}, "metric": "test_auc"},
            "unknown metric 'test_auc'",
        ),
        (
            {
                "search_space": {"model.learning_rate": {"grid": [0.001]}},
                "metric": "test_mae",
                "scheduler": {"type": "asha"},
            },
            "ASHA stops trials on a metric reported every epoch",
        ),
        (
            {"search_space": {"model.dropout": {"grid": [0.1]}}, "dataset": "nowhere.yaml"},
            "no such dataset spec",
        ),
        (
            {"search_space": {"train.init_from": {"grid": [None, "runs:/abc/model"]}}},
            "search_space.train.init_from: value 'runs:/abc/model': init_from is models:/NAME@ALIAS",
        ),
        ({"search_space": {"train.frozen_backbone": {"grid": ["yes"]}}}, "frozen_backbone is true or false"),
        (
            {"search_space": {"train.epochs": {"grid": [1, 2]}}, "baseline": {"train.epochs": 3}},
            "baseline: train.epochs=3 is not a grid or choice value",
        ),
        (
            {"search_space": {"train.epochs": {"grid": [1, 2]}}, "scheduler": {"type": "asha"}},
            "trials of different lengths cannot share an ASHA schedule",
        ),
    ],
)
def test_bad_campaign_files_give_clear_errors(tmp_path, fields, message):
    path = _write(tmp_path, "bad", **fields)
    with pytest.raises(CampaignError) as err:
        load_campaign(path)
    print(f"\n{err.value}")
    assert str(path) in str(err.value) and message in str(err.value)
    r = CliRunner().invoke(app, ["tune", str(path), "--workdir", str(tmp_path / "w")])
    out = " ".join(r.output.split())
    assert r.exit_code == 2 and message in out and "Traceback" not in out
    assert not (tmp_path / "w").exists()  # nothing started


def test_shipped_campaigns_load_and_cover_the_papers_ablations():
    files = sorted((REPO / "campaigns").glob("*.yaml"))
    campaigns = {p.stem: load_campaign(p) for p in files}
    for name, c in campaigns.items():
        assert c.name == name, f"{name}.yaml names itself {c.name!r}"
        print(f"{name}: {c.network}, {c.n_trials()} trials, keys {list(c.search_space)}")
    keys = {k for c in campaigns.values() for k in c.search_space}
    for wanted in (
        "model.kernel_size",
        "dataset.selection.electron_fraction",
        "dataset.roi.zthr",
        "model.dropout",
        "dataset",
    ):
        assert wanted in keys, f"no shipped campaign searches {wanted}"
    for name in campaigns:  # every ablation has a full-size and a -small variant
        base = name.removesuffix("-small")
        assert base in campaigns and f"{base}-small" in campaigns, name


# ---- campaigns through Ray Tune + Ray Train + MLflow -----------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Local Ray with room for Tune -> Train -> Data (2 logical CPUs hang), MLflow on a private store."""
    import ray

    from dampeml.runtime import init_ray

    root = tmp_path_factory.mktemp("tuning")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)
    init_ray(num_cpus=6)
    yield root
    ray.shutdown()
    mp.undo()


def _children(parent_run_id: str):
    import mlflow

    client = mlflow.MlflowClient()
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}'")
    return client, parent, runs


@pytest.mark.timeout(600)
def test_a_killed_campaign_is_restored_and_lands_every_trial_in_mlflow(env):
    """Two dataset variants; every trial starts from a registered source with its feature extractor
    frozen (the transfer-learning settings). The campaign is killed once a trial's Ray Train run has
    registered a checkpoint; `--resume` restores it: every trial runs each epoch once, the trained
    models keep the source's convolutions, and MLflow holds one parent with a child per trial."""
    from dampeml.models.architecture import Architecture
    from dampeml.registry.bootstrap import register_catalog
    from dampeml.registry.models import load_model
    from dampeml.training.trainer import latest_checkpoint, load_checkpoint_model
    from dampeml.tuning.run import TuneError, run_campaign

    register_catalog(aliases=("src",), networks=["bgo-direction-low"], aligned=False)
    source = "models:/bgo-direction-low@src"
    epochs = 3
    path = _write(
        env,
        "tiny-fraction",
        search_space={
            "dataset.selection.electron_fraction": {"grid": [0.25, 0.8]},
            "train.init_from": {"choice": [source]},
            "train.frozen_backbone": {"choice": [True]},
        },
        epochs=epochs,
    )
    work = env / "work"
    root = work / "tiny-fraction"
    log_path = env / "tiny-fraction.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dampeml.cli.main", "tune", str(path), "--workdir", str(work),
             "--num-cpus", "6"],
            start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "RAY_ADDRESS": ""},
        )  # fmt: skip
        # kill once a trial's Ray Train controller has registered a checkpoint (its record, not
        # the files alone and not a sleep): the resumed trial must continue from it
        deadline = time.monotonic() + 360
        while time.monotonic() < deadline and proc.poll() is None:
            if any(registered_epoch(run) >= 1 for run in root.glob("train-runs/train-*")):
                break
            time.sleep(0.5)
        assert proc.poll() is None, f"the campaign ended before the kill: see {log_path}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (root / "comparison.md").exists(), "the kill must land mid-campaign"
    print(f"\nkilled with Ray Train runs {sorted(p.name for p in (root / 'train-runs').iterdir())} started")

    c = load_campaign(path)
    result = run_campaign(c, work, resume=True)
    assert [t["status"] for t in result.trials] == ["TERMINATED", "TERMINATED"]
    assert all(t["epochs"] == epochs and "test_angle68_deg" in t["metrics"] for t in result.trials)
    assert all(t["metrics"]["train_seconds"] > 0 for t in result.trials)
    start, restored = load_model(source), []
    for t in result.trials:
        ckpt = latest_checkpoint(str(root / "train-runs"), f"train-{t['trial_id']}")
        state = json.loads((Path(ckpt.path) / "state.json").read_text())
        assert [h["epoch"] for h in state["history"]] == list(range(1, epochs + 1))  # each epoch once
        restored += state.get("restored_from_epoch", [])
        trained = load_checkpoint_model(ckpt.path, Architecture("bgo-direction-low"))
        for layer, same in (("conv_1", True), ("conv_2", True), ("log_weight", False)):
            a, b = start.get_layer(layer).get_weights()[0], trained.get_layer(layer).get_weights()[0]
            assert np.array_equal(a, b) == same, (
                f"{layer}: {'changed' if same else 'unchanged'} in {t['trial_id']}"
            )
    print(f"restored Ray Train runs from epochs {restored}")
    assert restored and all(1 <= e < epochs for e in restored)  # the interrupted trial continued its run

    # each dataset variant was built once into the cache, with the electron share it asks for
    built = sorted((work / "datasets").iterdir())
    assert len(built) == 2 and len({p.name.split("-")[-2] for p in built}) == 2  # two spec hashes
    for p in built:
        m = json.loads((p / "manifest.json").read_text())
        wanted = m["spec"]["selection"]["electron_fraction"]
        n = {
            k: sum(m["particles"][s].get(k, 0) for s in m["particles"])
            for k in ("electron", "proton", "helium")
        }
        share = n["electron"] / sum(n.values())
        print(f"electron_fraction {wanted}: written share {share:.3f} of {sum(n.values())} (margin 0.08)")
        assert abs(share - wanted) < 0.08

    client, parent, children = _children(result.parent_run_id)
    assert parent.data.tags["campaign"] == "tiny-fraction" and parent.info.status == "FINISHED"
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "comparison")} == {
        "comparison/comparison.md",
        "comparison/comparison.csv",
        "comparison/comparison.png",
    }
    assert sorted(r.data.tags["trial_id"] for r in children) == sorted(t["trial_id"] for t in result.trials)
    assert len(children) == 2 and all(r.info.status == "FINISHED" for r in children)
    assert sorted(r.data.params["dataset.selection.electron_fraction"] for r in children) == ["0.25", "0.8"]
    assert {r.data.params["train.init_from"] for r in children} == {source}
    assert {r.data.params["train.frozen_backbone"] for r in children} == {"true"}
    assert len({r.data.tags["dataset_version"] for r in children}) == 2
    for r in children:
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "val_loss")]
        assert sorted(set(steps)) == list(range(1, epochs + 1)) and "test_angle68_deg" in r.data.metrics

    # a finished campaign: --resume adds nothing, a plain rerun refuses to overwrite it
    again = run_campaign(c, work, resume=True)
    assert again.parent_run_id == result.parent_run_id and len(_children(result.parent_run_id)[2]) == 2
    with pytest.raises(TuneError, match="pass --resume"):
        run_campaign(c, work)


def test_too_small_cpu_budget_fails_fast(env):
    from dampeml.training.trainer import TrainingError
    from dampeml.tuning.run import run_campaign

    path = _write(
        env,
        "too-wide",
        search_space={"model.learning_rate": {"grid": [0.001]}},
        resources={"workers_per_trial": 3, "max_concurrent_trials": 2},
    )
    work = env / "work-too-wide"
    # fast = before any dataset is built or anything is written (not a wall-clock bound)
    with mock.patch(
        "dampeml.tuning.run.prepare_datasets", side_effect=AssertionError("built datasets")
    ) as built:
        with pytest.raises(TrainingError, match=r"need at least 8.2 logical CPUs .* the cluster has 6"):
            run_campaign(load_campaign(path), work)
    assert not built.called and not work.exists()
