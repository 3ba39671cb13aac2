"""Training recipes: validation, the shipped recipe's profiles, and a real run at CI size (Ray
Data builds, Ray Train, MLflow registry): a rerun skips every step, a changed spec reruns
exactly the steps downstream of it, fine-tuning starts from the upstream step's version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dampeml.cli.main import app
from dampeml.pipeline.recipe import RecipeError, load_recipe

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "recipes" / "chain.yaml"


def _write(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _recipe(spec: str = "../datasets/bgo-direction-low-small.yaml", **step) -> dict:
    return {
        "name": "t",
        "steps": {"a": {"network": "bgo-direction-low", "dataset": spec, **step}},
        "profiles": {"p": {}},
    }


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda r: r["steps"]["a"].update(network="bgo-direction-lo"), "unknown network 'bgo-direction-lo'"),
        (lambda r: r["steps"]["a"].update(epochs=3), r"step 'a'.*epochs: Extra inputs are not permitted"),
        (lambda r: r["steps"]["a"].update(overrides={"kernel_sise": [3]}), "did you mean 'kernel_size'"),
        (lambda r: r["steps"]["a"].update(train={"epochs": 0}), r"train.epochs: Input should be greater"),
        (lambda r: r["steps"]["a"].update(needs=["b"]), "step 'a' needs 'b', which is not a step"),
        (
            lambda r: r["steps"]["a"].update(dataset="nowhere.yaml"),
            r"spec .*nowhere.yaml does not exist",
        ),
        (
            lambda r: r["profiles"]["p"].update(steps={"zz": {}}),
            "profile 'p' sets step 'zz', which is not",
        ),
        (
            lambda r: r["profiles"]["p"].update(add_steps={"a": {"network": "bgo-direction-low"}}),
            "profile 'p' adds step 'a', which the recipe already has",
        ),
        (
            lambda r: r["profiles"]["p"].update(
                add_steps={"z": {"network": "electron-proton", "dataset": "x"}}
            ),
            r"step 'z'.*an added step trains one of the recipe's networks.*not 'electron-proton'",
        ),
        (lambda r: r["profiles"]["p"].update(alias="../x"), r"profiles.p.alias: String should match"),
        (lambda r: r.update(stages=[]), "stages: Extra inputs are not permitted"),
    ],
)
def test_bad_recipes_name_the_file_and_field(tmp_path, edit, message):
    recipe = _recipe(spec=str(REPO / "datasets" / "bgo-direction-low-small.yaml"))
    edit(recipe)
    path = _write(tmp_path / "r.yaml", recipe)
    with pytest.raises(RecipeError, match=message) as err:
        load_recipe(path, "p")
    assert str(path) in str(err.value)


def test_steps_run_after_what_they_need_and_cycles_are_refused(tmp_path):
    spec = str(REPO / "datasets" / "bgo-direction-low-small.yaml")
    recipe = {
        "name": "t",
        "steps": {
            "c": {"network": "bgo-direction-low", "dataset": spec, "init_from": "b"},
            "b": {"network": "bgo-direction-low", "dataset": spec, "needs": ["a"]},
            "a": {"network": "bgo-direction-low", "dataset": spec},
        },
        "profiles": {"p": {}},
    }
    assert list(load_recipe(_write(tmp_path / "r.yaml", recipe), "p").steps) == ["a", "b", "c"]
    recipe["steps"]["a"]["needs"] = ["c"]
    with pytest.raises(RecipeError, match=r"cycle: c -> b -> a -> c"):
        load_recipe(_write(tmp_path / "r.yaml", recipe), "p")


def test_lineage_tags_are_valid_mlflow_tag_names_for_a_step_that_fine_tunes_a_registered_model(tmp_path):
    """A step fine-tuning `models:/NAME@ALIAS` (not a step of the recipe) records it as its
    `init_from`; the URI is never a tag name (`@` is not allowed in one: registration failed)."""
    from mlflow.utils.validation import _validate_tag_name

    from dampeml.pipeline.runner import step_lineage

    spec = str(REPO / "datasets" / "bgo-direction-low-small.yaml")
    recipe = {
        "name": "t",
        "steps": {
            "a": {"network": "bgo-direction-low", "dataset": spec},
            "b": {
                "network": "bgo-direction-low",
                "dataset": spec,
                "needs": ["a"],
                "init_from": "models:/bgo-direction-low@reference",
            },
        },  # fmt: skip
        "profiles": {"p": {}},
    }
    resolved = load_recipe(_write(tmp_path / "r.yaml", recipe), "p")
    upstream = {"a": "bgo-direction-low/3", "models:/bgo-direction-low@reference": "bgo-direction-low/1"}
    tags = step_lineage(resolved, "b", "k123", upstream)
    assert tags == {
        "pipeline": "t/p",
        "pipeline_step": "b",
        "recipe_hash": resolved.recipe_hash(),
        "step_key": "k123",
        "upstream.a": "bgo-direction-low/3",
    }
    for name in tags:
        _validate_tag_name(name)


def _shipped_copy(tmp_path: Path, edit) -> Path:
    """The shipped recipe, edited, written elsewhere with its spec paths made absolute."""
    recipe = yaml.safe_load(SHIPPED.read_text())
    edit(recipe)
    steps = [
        *recipe["steps"].values(),
        *(
            s
            for p in recipe["profiles"].values()
            for k in ("steps", "add_steps")
            for s in p.get(k, {}).values()
        ),
    ]
    for step in steps:
        if "dataset" in step:
            step["dataset"] = str((SHIPPED.parent / step["dataset"]).resolve())
    return _write(tmp_path / "chain.yaml", recipe)


def test_a_model_seeded_step_must_need_the_steps_that_train_its_upstream(tmp_path):
    """The shipped recipe with inelastic-hough's `needs` removed: its RoI (the chain's final track)
    comes from networks the recipe trains, so the recipe is refused, naming the missing step: in
    the reference profile, the last fine-tuning stage of the precise network."""

    def no_needs(recipe):
        del recipe["steps"]["inelastic-hough"]["needs"]
        del recipe["profiles"]["reference"]["steps"]["inelastic-hough"]["needs"]

    path = _shipped_copy(tmp_path, no_needs)
    with pytest.raises(
        RecipeError, match=r"step 'inelastic-hough'.*does not need step\(s\) \['stk-hough-precise-high'\]"
    ):
        load_recipe(path, "reference")
    load_recipe(path, "demo")  # the demo's small specs centre the RoI on the smeared true track
    with pytest.raises(RecipeError, match=r"\['stk-hough-precise'\]"):
        load_recipe(_shipped_copy(tmp_path, lambda r: r["steps"]["inelastic-hough"].pop("needs")), "paper")


def test_fine_tuning_stages_seed_their_datasets_with_the_latest_stage_before_them():
    """The reference profile trains the BGO and tracker networks in stages: each model-seeded
    dataset is built with, per network, the last stage its step runs after (not the alias)."""
    from dampeml.pipeline.recipe import pinned_steps

    ref = load_recipe(SHIPPED, "reference")
    order = list(ref.steps)
    assert (
        order.index("bgo-direction-mid-more")
        < order.index("stk-hough-coarse-high")
        < order.index("stk-hough-precise-high")
        < order.index("inelastic-hough")
    )
    assert pinned_steps(ref, "stk-hough-coarse") == {
        f"bgo-direction-{r}": f"bgo-direction-{r}" for r in ("low", "mid", "high")
    }
    high = pinned_steps(ref, "stk-hough-precise-high")
    assert high["bgo-direction-mid"] == "bgo-direction-mid-more"
    assert high["stk-hough-coarse"] == "stk-hough-coarse-high"
    assert high["stk-hough-precise"] == "stk-hough-precise"  # what it fine-tunes from
    final = pinned_steps(ref, "inelastic-hough")
    assert final["stk-hough-precise"] == "stk-hough-precise-high" and "electron-proton" not in final
    # an added step's own settings win over the profile's defaults
    assert (
        ref.steps["stk-hough-coarse-high"].train.epochs == 4
        and ref.steps["stk-hough-coarse"].train.epochs == 6
    )
    assert ref.steps["bgo-direction-high-more"].limit_events == 150000


def test_the_shipped_recipe_resolves_in_every_profile():
    """Each profile resolves (specs exist, settings valid); the demo trains every catalog network
    on the small specs; profiles change sizes, never which networks the chain has."""
    from dampeml.models.catalog import CHAIN_NETWORKS as NETWORK_NAMES

    profiles = yaml.safe_load(SHIPPED.read_text())["profiles"]
    resolved = {p: load_recipe(SHIPPED, p) for p in profiles}
    demo = resolved["demo"]
    assert sorted(s.network for s in demo.steps.values()) == sorted(NETWORK_NAMES)
    assert all(p.name.endswith("-small.yaml") for p in demo.dataset_paths.values())
    assert list(demo.steps).index("stk-hough-precise") > list(demo.steps).index("bgo-direction-low") >= 0
    for name, r in resolved.items():
        assert {s.network for s in r.steps.values()} == set(NETWORK_NAMES), name
    assert resolved["paper"].steps["bgo-direction-low"].preset == "full"
    assert resolved["reference"].alias == "reference"
    out = CliRunner().invoke(app, ["pipeline", "run", str(SHIPPED), "--profile", "paper", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "stk-hough-coarse" in out.output and "GPU" in out.output


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Local Ray with room for a worker and the data feed, MLflow on a private sqlite store."""
    import ray

    from dampeml.registry.bootstrap import ensure_experiment
    from dampeml.runtime import init_ray

    root = tmp_path_factory.mktemp("pipeline")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)
    ensure_experiment(root / "artifacts")
    init_ray(num_cpus=3)
    yield root
    ray.shutdown()
    mp.undo()


def _ci_recipe(root: Path) -> Path:
    """Three steps at CI size: a, b fine-tuned from a (not promoted), c independent of both."""
    for spec in ("bgo-direction-low-small", "bgo-direction-mid-small"):
        shutil.copy(REPO / "datasets" / f"{spec}.yaml", root / f"{spec}.yaml")
    train = {"epochs": 1, "workers": 1, "steps_per_epoch": 2}
    recipe = {
        "name": "ci",
        "steps": {
            "a": {"network": "bgo-direction-low", "dataset": "bgo-direction-low-small.yaml"},
            "b": {"network": "bgo-direction-low", "dataset": "bgo-direction-low-small.yaml",
                  "init_from": "a", "promote": False},
            "c": {"network": "bgo-direction-mid", "dataset": "bgo-direction-mid-small.yaml"},
        },
        "profiles": {"ci": {"alias": "ci", "defaults": {"limit_events": 600, "train": train}}},
    }  # fmt: skip
    return _write(root / "ci.yaml", recipe)


@pytest.mark.timeout(1500)
@pytest.mark.usefixtures("ray_idle")
def test_a_recipe_runs_reruns_nothing_and_reruns_exactly_what_a_change_touches(env):
    import mlflow

    from dampeml.pipeline.runner import run_pipeline
    from dampeml.registry.models import list_versions, version_of

    path = _ci_recipe(env)
    first = run_pipeline(load_recipe(path, "ci"), env / "work")
    assert [r.status for r in first.values()] == ["trained"] * 3
    a, b, c = first["a"], first["b"], first["c"]
    assert version_of("bgo-direction-low", "ci") == a.version and not b.promoted
    assert version_of("bgo-direction-mid", "ci") == c.version and c.promoted
    tags = {v.version: v.tags for v in list_versions("bgo-direction-low")}
    assert tags[b.version]["init_from"] == f"models:/bgo-direction-low/{a.version}"
    assert tags[b.version]["upstream.a"] == f"bgo-direction-low/{a.version}"
    child = mlflow.get_run(mlflow.MlflowClient().get_model_version("bgo-direction-mid", c.version).run_id)
    parent = mlflow.get_run(child.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["recipe_hash"] == child.data.tags["recipe_hash"]
    assert (env / "work" / "pipelines" / "ci-ci" / "recipe.resolved.yaml").exists()

    again = run_pipeline(load_recipe(path, "ci"), env / "work")
    assert {k: (r.status, r.version) for k, r in again.items()} == {
        k: ("reused", r.version) for k, r in first.items()
    }

    # another run folder on the same registry finds every step by its key among the registered versions
    elsewhere = run_pipeline(load_recipe(path, "ci"), env / "work-elsewhere")
    assert {k: (r.status, r.version) for k, r in elsewhere.items()} == {
        k: ("reused", r.version) for k, r in first.items()
    }

    # another seed in a's spec: a and b (fine-tuned from a) train again, c is untouched
    spec = env / "bgo-direction-low-small.yaml"
    raw = yaml.safe_load(spec.read_text())
    raw["sources"][0]["seed"] += 1
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    third = run_pipeline(load_recipe(path, "ci"), env / "work")
    print("\n" + ", ".join(f"{k}: {r.status} v{r.version}" for k, r in third.items()))
    assert [third[k].status for k in "abc"] == ["trained", "trained", "reused"]
    assert third["c"].version == c.version and third["a"].version not in (a.version, b.version)
    tags = {v.version: v.tags for v in list_versions("bgo-direction-low")}
    assert tags[third["b"].version]["init_from"] == f"models:/bgo-direction-low/{third['a'].version}"


def test_the_plan_counts_events_storage_and_hours_from_the_measured_rates(tmp_path):
    """Hand-computed: 10 steps x 32 x 2 epochs = 640 samples at 1,343/s on one core; 3,000 planned
    events x 166 B; on a GPU, 640 samples at 298,000 / 3 per s."""
    from dampeml.datasets.spec import load_spec
    from dampeml.pipeline.plan import step_cost

    spec = REPO / "datasets" / "bgo-direction-low-small.yaml"
    recipe = _recipe(spec=str(spec), train={"epochs": 2, "workers": 1, "steps_per_epoch": 10})
    step = load_recipe(_write(tmp_path / "r.yaml", recipe), "p").steps["a"]
    cost = step_cost(step, load_spec(spec))
    assert cost.events == 2900 and cost.storage_gb == pytest.approx(2900 * 166 / 1e9)
    assert cost.hours == pytest.approx(640 / 1343 / 3600) and cost.gpu_hours == 0
    gpu = step.model_copy(update={"train": step.train.model_copy(update={"gpus_per_worker": 1.0})})
    assert step_cost(gpu, load_spec(spec)).gpu_hours == pytest.approx(640 / (298_000 / 3) / 3600)


def test_lineage_names_the_recipe_relative_to_where_the_pipeline_ran(tmp_path, monkeypatch):
    """A shipped zoo copies the resolved recipe: run from a clone's root it names `recipes/...`, the same
    on every machine, not the training machine's absolute path; a recipe elsewhere keeps its full path."""
    from dampeml.pipeline.runner import _shown

    monkeypatch.chdir(tmp_path)
    assert _shown(tmp_path / "recipes" / "chain.yaml") == str(Path("recipes") / "chain.yaml")
    outside = tmp_path.parent / "elsewhere" / "chain.yaml"
    assert _shown(outside) == str(outside)
