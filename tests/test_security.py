"""Checks at the edges: storage roots, artifact paths, model URIs and tampered model artifacts.

The tampered-model tests register a real model in a private MLflow store, then change its files on
disk the way an attacker with write access to the artifact store would.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dampeml.registry.models import RegistryError, check_model_uri, model_exists, safe_load_model
from dampeml.security import (
    ArtifactPathError,
    StorageNotAllowedError,
    UnsafeModelError,
    check_artifact_path,
    check_job_paths,
    check_spec_storage,
    check_storage,
)
from tests.cli_runner import run_cli

REPO = Path(__file__).resolve().parents[1]

# ---- storage roots


@pytest.fixture
def roots(tmp_path, monkeypatch):
    allowed = tmp_path / "data"
    allowed.mkdir()
    monkeypatch.setenv("DAMPEML_ALLOWED_STORAGE", f"{allowed},s3://dampeml-bucket/prod")
    return allowed


def test_locations_inside_the_allowed_roots_pass(roots):
    for loc in (roots, roots / "ds" / "x", f"{roots}/mc/*.root", f"file://{roots}/out",
                "s3://dampeml-bucket/prod/datasets/a", "s3://dampeml-bucket/prod"):  # fmt: skip
        assert check_storage(loc) == os.fspath(loc)


@pytest.mark.parametrize(
    "bad",
    [
        "/etc/passwd",
        "{root}/../elsewhere",  # .. out of the root
        "{root}-sibling/ds",  # a prefix of the name is not a parent directory
        "{root}/link/secret",  # a symlink out of the root
        "/tmp/*/ds",
        "s3://dampeml-bucket/production/x",
        "s3://other-bucket/prod/x",
        "s3://dampeml-bucket/prod/../private",
        "gs://dampeml-bucket/prod/x",
        "file:///etc/shadow",
    ],
)
def test_locations_outside_the_allowed_roots_are_refused_by_name(roots, bad):
    (roots / "link").symlink_to("/etc")
    loc = bad.format(root=roots)
    with pytest.raises(StorageNotAllowedError, match="--out") as err:
        check_storage(loc, what="--out")
    print(f"\n{err.value}")
    assert "DAMPEML_ALLOWED_STORAGE" in str(err.value) or ".." in str(err.value)


def test_unset_allowed_storage_restricts_nothing(monkeypatch):
    monkeypatch.delenv("DAMPEML_ALLOWED_STORAGE", raising=False)
    assert check_storage("/etc/passwd") == "/etc/passwd"


def test_a_dataset_spec_reading_outside_the_roots_is_refused(roots, tmp_path):
    from dampeml.datasets.spec import load_spec

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        "name: x\nkind: bgo-direction\nsources:\n- type: files\n  glob: '/home/*/flight/*.root'\n"
        "features: [bgo_image]\ntargets: [track]\n"
    )
    with pytest.raises(StorageNotAllowedError, match=r"spec\.yaml: sources\[0\]\.glob"):
        check_spec_storage(load_spec(spec_path), spec_path)
    # the shipped specs simulate in the pipeline: nothing to refuse
    for shipped in sorted((REPO / "datasets").glob("*.yaml")):
        check_spec_storage(load_spec(shipped), shipped)


def test_job_arguments_are_checked_by_name(roots):
    check_job_paths(out=roots / "reco", dataset=roots / "ds", storage=None)
    with pytest.raises(StorageNotAllowedError, match="--storage '/var/tmp/runs'"):
        check_job_paths(out=roots / "reco", storage="/var/tmp/runs")


# ---- globs and links (issue 19, defect 2: `ROOT/*/../../outside` passed the literal-prefix check)


@pytest.fixture
def glob_tree(roots, tmp_path):
    """ROOT with sub-folders, a link folder and a link file out of it; `outside` beside it."""
    outside = tmp_path / "outside"
    (outside / "a").mkdir(parents=True)
    (outside / "secret.root").write_text("x")
    (outside / "a" / "x.root").write_text("x")
    for d in ("a", "sub/b"):
        (roots / d).mkdir(parents=True)
        (roots / d / "x.root").write_text("x")
    (roots / "link").symlink_to(outside)
    (roots / "evil.root").symlink_to(outside / "secret.root")
    (tmp_path / "data-sibling").mkdir()
    (tmp_path / "data-sibling" / "x.root").write_text("x")
    return roots, outside


@pytest.mark.parametrize(
    "bad",
    [
        "{root}/*/../../outside/x.root",  # the case: `..` after a wildcard
        "{root}/[as]*/../../outside/*.root",
        "{root}/a*/../../../etc/passwd",
        "{root}/sub/?/../../../outside/a/x.root",
        "file://{root}/*/../../outside/x.root",
        "{root}*/x.root",  # the wildcard in the root's own name reaches its siblings (data-sibling)
        "{root}/*/secret.root",  # a glob through the link folder ROOT/link -> outside
        "{root}/*.root",  # matches the link file ROOT/evil.root -> outside/secret.root
        "{root}/l?nk/a/*.root",
        "s3://dampeml-bucket/prod*/x",  # matches s3://dampeml-bucket/production/x
    ],
)
def test_globs_that_reach_outside_the_roots_are_refused(glob_tree, bad):
    roots, _ = glob_tree
    loc = bad.format(root=roots)
    with pytest.raises(StorageNotAllowedError, match="--input") as err:
        check_storage(loc, what="--input")
    print(f"\n{err.value}")
    assert loc in str(err.value), err.value
    assert "DAMPEML_ALLOWED_STORAGE" in str(err.value) or "'..' after a wildcard" in str(err.value)


def test_a_glob_written_literally_by_a_writer_is_judged_literally_too(glob_tree):
    """A folder named `*` is possible: `--out 'ROOT/*/l/new.root'` with ROOT/*/l -> outside writes
    outside although the glob matches no file yet."""
    roots, outside = glob_tree
    (roots / "*").mkdir()
    (roots / "*" / "l").symlink_to(outside)
    with pytest.raises(StorageNotAllowedError, match=r"\(resolved: .*outside/new\.root\)"):
        check_storage(f"{roots}/*/l/new.root", what="--out")


@pytest.mark.parametrize(
    "good",
    [
        "{root}/*/x.root",
        "{root}/sub/*/x.root",
        "{root}/[as]*/*.root",
        "{root}/../data/a/*.root",  # `..` before the first wildcard is resolved, back into ROOT
        "{root}/./sub/./b/?.root",
        "{root}/new/*/x.root",  # nothing matches yet
        "s3://dampeml-bucket/prod/*/x.root",
    ],
)
def test_globs_inside_the_roots_pass(glob_tree, good):
    loc = good.format(root=glob_tree[0])
    assert check_storage(loc, what="--input") == loc


@pytest.mark.timeout(60)
def test_the_jobs_refuse_a_glob_that_climbs_out_of_the_root(glob_tree, tmp_path):
    """`..` after a wildcard, through every entry point that takes a path (defect 2)."""
    from dampeml.training.config import TrainConfig
    from dampeml.training.trainer import check_inputs

    roots, outside = glob_tree
    climb = f"{roots}/*/../../outside"
    code, out = run_cli("evaluate", "--input", f"{climb}/*.root", "--out", str(roots / "report"))
    _refused_climb(code, out, "--input")
    code, out = run_cli("reprocess", "--input", f"{climb}/*.root", "--out", str(roots / "reco"))
    _refused_climb(code, out, "--input")
    code, out = run_cli("reprocess", "--input", f"{roots}/a/*.root", "--out", f"{climb}/reco")
    _refused_climb(code, out, "--out")
    sim = ("--particle", "proton", "--events", "10", "--energy-min", "10", "--energy-max", "100")
    code, out = run_cli("simulate", *sim, "--out", f"{climb}/p.root")
    _refused_climb(code, out, "--out")
    spec = _spec(tmp_path / "climb.yaml", f"{climb}/*.root")
    code, out = run_cli("dataset", "build", str(spec), "--out", str(roots / "ds"))
    _refused_climb(code, out, "sources[0].glob")
    code, out = run_cli("dataset", "build", str(_spec(tmp_path / "ok.yaml", roots / "a/*.root")), "--out",
                     f"{climb}/ds")  # fmt: skip
    _refused_climb(code, out, "--out")
    for arg in ("dataset", "storage"):
        args = {"dataset": str(roots / "ds"), "storage": str(roots / "runs"), arg: f"{climb}/{arg}"}
        with pytest.raises(StorageNotAllowedError, match=f"--{arg} .*after a wildcard"):
            check_inputs(TrainConfig(network="bgo-direction-low", **args))
    code, out = run_cli(
        "tune", str(REPO / "campaigns" / "bgo-filter-shape-small.yaml"), "--workdir", f"{climb}/w"
    )
    _refused_climb(code, out, "--workdir")
    assert sorted(p.name for p in outside.iterdir()) == ["a", "secret.root"]  # nothing written
    assert sorted(p.name for p in roots.iterdir()) == ["a", "evil.root", "link", "sub"]


def _refused_climb(code: int, out: str, name: str) -> None:
    print(f"\n{out}")
    assert code == 2 and "Traceback" not in out and out.count("error:") == 1, out
    assert name in out and "'..' after a wildcard" in out, out


# ---- property-based: whatever a path check accepts stays under the root
# (derandomize: the same examples on every run, like every other seed in the suite)


PARTS = ["a", "sub", "b", "link", "l", "evil.root", "x.root", "secret.root", "outside", "data",
         "data-sibling", "*", "..", ".", "", "?", "[ab]", "[!a]*", "*.root", "x*", "data*",
         "l?nk"]  # fmt: skip


@pytest.fixture(scope="module")
def prop_tree(tmp_path_factory):
    """A fixed tree for the properties (hypothesis runs many examples on one fixture): links out of
    ROOT as folders, files and inside a folder literally named `*`."""
    base = tmp_path_factory.mktemp("prop")
    root, outside = base / "data", base / "outside"
    for d in (root / "a", root / "sub" / "b", root / "*", outside / "a", base / "data-sibling"):
        d.mkdir(parents=True)
    for f in (root / "a" / "x.root", root / "sub" / "b" / "x.root", outside / "secret.root",
              outside / "a" / "x.root", base / "data-sibling" / "x.root"):  # fmt: skip
        f.write_text("x")
    (root / "link").symlink_to(outside)
    (root / "*" / "l").symlink_to(outside)
    (root / "evil.root").symlink_to(outside / "secret.root")
    (root / "sub" / "l").symlink_to(root / "a")  # a link that stays inside
    return base, root


def _accepted(location: str, root: Path) -> bool:
    try:
        check_storage(location, what="--input", roots=[str(root)])
    except StorageNotAllowedError:
        return False
    return True


def _inside(path: str, root: Path) -> bool:
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top + os.sep)


@pytest.mark.timeout(120)
def test_property_an_accepted_local_path_or_glob_never_reaches_outside(prop_tree):
    """Every accepted location opens (literally) and matches (as a glob) only paths whose real
    location is under the root; paths start at ROOT or at its parent."""
    from glob import glob

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base, root = prop_tree

    @settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(start=st.sampled_from([root, base]), parts=st.lists(st.sampled_from(PARTS), max_size=6))
    def prop(start, parts):
        location = "/".join([str(start), *parts])
        if _accepted(location, root):
            assert _inside(location, root), location  # what a writer opens
            for match in glob(location):  # what a reader opens
                assert _inside(match, root), (location, match)

    prop()


@pytest.mark.timeout(120)
def test_property_plain_paths_inside_the_root_are_accepted(prop_tree):
    """No false alarms: names without wildcards, links or `..`, under ROOT, always pass."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    _, root = prop_tree
    name = st.text(st.characters(codec="utf-8", exclude_characters="/\x00*?["), min_size=1, max_size=12)
    name = name.filter(lambda s: s not in (".", "..", "link", "evil.root"))

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.lists(name, max_size=5))
    def prop(parts):
        location = "/".join([str(root), *parts])
        assert _accepted(location, root), location

    prop()


@pytest.mark.timeout(120)
def test_property_an_accepted_object_store_uri_stays_under_its_prefix():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    root = "s3://dampeml-bucket/prod"
    parts = st.lists(st.sampled_from(["prod", "production", "x", "..", ".", "", "*", "prod*", "%2e%2e"]),
                     max_size=6)  # fmt: skip

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(bucket=st.sampled_from(["dampeml-bucket", "dampeml-bucket*", "other"]), parts=parts)
    def prop(bucket, parts):
        location = "/".join([f"s3://{bucket}", *parts])
        try:
            check_storage(location, roots=[root])
        except StorageNotAllowedError:
            return
        path = "/" + "/".join(p for p in parts if p not in ("", "."))
        assert bucket == "dampeml-bucket" and ".." not in path.replace("%2e%2e", "..").split("/"), location
        assert (path + "/").startswith("/prod/"), location

    prop()


# ---- the entry points refuse outside storage before any work (and accept what is inside)

SPEC = (
    "name: x\nkind: {kind}\nsources:\n- type: files\n  glob: '{glob}'\n"
    "features: [{features}]\ntargets: [{targets}]\n"
)


def _spec(
    path: Path, glob: str | Path, kind="bgo-direction", features="bgo_image", targets="track", extra=""
):
    path.write_text(SPEC.format(kind=kind, glob=glob, features=features, targets=targets) + extra)
    return path


def _refused(code: int, out: str, *names) -> None:
    print(f"\n{out}")
    assert code == 2 and "Traceback" not in out and out.count("error:") == 1, out
    assert "outside the allowed storage" in out and "DAMPEML_ALLOWED_STORAGE" in out, out
    for name in names:
        assert str(name) in out, (name, out)


@pytest.mark.timeout(60)
def test_dataset_build_refuses_outside_storage_before_any_work(roots, tmp_path):
    from dampeml.datasets.build import build_dataset, check_build_inputs
    from dampeml.datasets.spec import load_spec

    outside = tmp_path / "outside"
    bad_spec = _spec(tmp_path / "bad.yaml", outside / "*.root")
    good_spec = _spec(tmp_path / "good.yaml", roots / "mc" / "*.root")
    # a source outside: the spec file, the field, the glob and the allowed root are named
    code, out = run_cli("dataset", "build", str(bad_spec), "--out", str(roots / "ds"))
    _refused(code, out, bad_spec, "sources[0].glob", outside, roots)
    # --out outside
    code, out = run_cli("dataset", "build", str(good_spec), "--out", str(outside / "ds"))
    _refused(code, out, "--out", outside / "ds", roots)
    with pytest.raises(StorageNotAllowedError, match="--out"):
        build_dataset(load_spec(good_spec), str(outside / "ds"), spec_path=good_spec)
    assert not (roots / "ds").exists() and not outside.exists()  # nothing written, Ray not needed
    check_build_inputs(load_spec(good_spec), str(roots / "ds"), good_spec)  # inside: accepted
    check_build_inputs(load_spec(good_spec), "s3://dampeml-bucket/prod/datasets/x", good_spec)


@pytest.mark.timeout(60)
def test_training_refuses_a_dataset_or_storage_outside(roots, tmp_path):
    from dampeml.datasets.loader import DatasetError
    from dampeml.training.config import TrainConfig
    from dampeml.training.trainer import check_inputs

    outside = tmp_path / "outside"
    inside = {"dataset": str(roots / "ds"), "storage": str(roots / "runs")}
    for arg in ("dataset", "storage"):
        args = {**inside, arg: str(outside / arg)}
        with pytest.raises(StorageNotAllowedError, match=f"--{arg} '{outside / arg}'"):
            check_inputs(TrainConfig(network="bgo-direction-low", **args))
        code, out = run_cli("train", "bgo-direction-low", *(f"--{k}={v}" for k, v in args.items()))
        _refused(code, out, f"--{arg}", outside / arg, roots)
    assert not outside.exists() and not (roots / "runs").exists()
    # inside: the storage check passes, the (unbuilt) dataset is what is missing
    with pytest.raises(DatasetError, match="dataset build"):
        check_inputs(TrainConfig(network="bgo-direction-low", **inside))


@pytest.mark.timeout(60)
def test_reprocessing_refuses_inputs_or_out_outside(roots, tmp_path):
    from dampeml.inference.reprocess import ReprocessConfig

    outside = tmp_path / "outside"
    good_in, good_out = f"{roots}/flight/*.root", str(roots / "reco")
    ReprocessConfig(good_in, good_out).check()
    ReprocessConfig([roots / "a.root", str(roots / "b.root")], "s3://dampeml-bucket/prod/reco").check()
    for inputs, out, name, bad in [
        (f"{outside}/*.root", good_out, "--input", f"{outside}/*.root"),
        ([str(roots / "a.root"), "/etc/passwd"], good_out, "--input", "/etc/passwd"),
        (good_in, str(outside / "reco"), "--out", outside / "reco"),
    ]:
        with pytest.raises(StorageNotAllowedError, match=name) as err:
            ReprocessConfig(inputs, out).check()
        assert str(bad) in str(err.value) and str(roots) in str(err.value)
    code, out = run_cli("reprocess", "--input", f"{outside}/*.root", "--out", good_out)
    _refused(code, out, "--input", outside, roots)
    code, out = run_cli("reprocess", "--input", good_in, "--out", str(outside / "reco"))
    _refused(code, out, "--out", outside / "reco", roots)
    assert not outside.exists() and not (roots / "reco").exists()


@pytest.mark.timeout(60)
def test_simulation_alignment_and_evaluation_refuse_paths_outside(roots, tmp_path):
    """The remaining job arguments: simulate --out, simulate-production --out, align --flight,
    evaluate --input/--out; each refused by name before anything is read or written."""
    from dampeml.detector.production import ProductionRequest

    outside = tmp_path / "outside"
    sim = ("--particle", "proton", "--events", "10", "--energy-min", "10", "--energy-max", "100")
    code, out = run_cli("simulate", *sim, "--out", str(outside / "p.root"))
    _refused(code, out, "--out", outside / "p.root", roots)
    code, out = run_cli("simulate-production", *sim, "--out", str(outside / "prod"))
    _refused(code, out, "--out", outside / "prod", roots)
    ProductionRequest("proton", 10, 10.0, 100.0, str(roots / "prod"))  # inside: accepted
    code, out = run_cli("align", "bgo-direction-mid", "--flight", f"{outside}/*.root")
    _refused(code, out, "--flight", outside, roots)
    code, out = run_cli("evaluate", "--input", f"{outside}/*.root", "--out", str(roots / "report"))
    _refused(code, out, "--input", outside, roots)
    code, out = run_cli("evaluate", "--input", f"{roots}/mc/*.root", "--out", str(outside / "report"))
    _refused(code, out, "--out", outside / "report", roots)
    assert not outside.exists() and not (roots / "report").exists() and not (roots / "prod").exists()


@pytest.mark.timeout(60)
def test_plots_and_sample_pictures_refuse_paths_outside(roots, tmp_path):
    """`sim-plots` and `dataset show --picture` wrote without the check (issue 19, defect 9)."""
    outside = tmp_path / "outside"
    code, out = run_cli("sim-plots", str(roots / "mc.root"), "--out", str(outside / "plots"))
    _refused(code, out, "--out", outside / "plots", roots)
    code, out = run_cli("sim-plots", str(outside / "mc.root"), "--out", str(roots / "plots"))
    _refused(code, out, "event file", outside / "mc.root", roots)
    code, out = run_cli("dataset", "show", str(roots / "ds"), "--picture", str(outside / "p.png"))
    _refused(code, out, "--picture", outside / "p.png", roots)
    code, out = run_cli("dataset", "show", str(outside / "ds"))  # its default picture lies beside it
    _refused(code, out, "dataset", outside / "ds", roots)
    assert not outside.exists() and not (roots / "plots").exists()


@pytest.mark.timeout(60)
def test_campaigns_refuse_datasets_or_a_workdir_outside(roots, tmp_path):
    import yaml

    from dampeml.tuning.campaign import load_campaign

    outside = tmp_path / "outside"
    _spec(tmp_path / "spec-good.yaml", roots / "mc" / "*.root")
    bad_spec = _spec(tmp_path / "spec-bad.yaml", outside / "*.root")

    def campaign(name: str, **fields) -> Path:
        path = tmp_path / f"{name}.yaml"
        base = {"name": name, "network": "bgo-direction-low", "dataset": "spec-good.yaml"}
        path.write_text(
            yaml.safe_dump({**base, "search_space": {"model.learning_rate": {"grid": [0.001]}}, **fields})
        )
        return path

    good = campaign("good")
    assert load_campaign(good).dataset == "spec-good.yaml"  # inside: accepted
    bad = {
        "spec": campaign("spec", dataset="spec-bad.yaml"),
        "test": campaign("test", test_dataset="spec-bad.yaml"),
        "choice": campaign(
            "choice", search_space={"dataset": {"choice": ["spec-good.yaml", "spec-bad.yaml"]}}
        ),
        "glob": campaign(
            "glob", search_space={"dataset.sources.0.glob": {"grid": [f"{roots}/a/*", f"{outside}/*.root"]}}
        ),
    }
    for path in bad.values():
        with pytest.raises(StorageNotAllowedError, match="sources.0..glob") as err:
            load_campaign(path)
        print(f"\n{err.value}")
        assert str(path) in str(err.value) and str(outside) in str(err.value) and str(roots) in str(err.value)
    assert str(bad_spec) in str(pytest.raises(StorageNotAllowedError, load_campaign, bad["spec"]).value)
    code, out = run_cli("tune", str(bad["glob"]), "--workdir", str(roots / "w"))
    _refused(code, out, bad["glob"], outside, roots)
    code, out = run_cli("tune", str(good), "--workdir", str(outside / "w"))  # refused before Ray starts
    _refused(code, out, "--workdir", outside / "w", roots)
    assert not outside.exists() and not (roots / "w").exists()


@pytest.mark.timeout(60)
def test_a_hough_roi_alias_that_is_no_alias_is_refused_before_any_work(roots, tmp_path):
    roi = "roi:\n  source: model\n  upstream: seed\n  alias: '../../etc'\n"
    spec = _spec(tmp_path / "roi.yaml", roots / "*.root", "stk-hough", "hough_hits", "hough_offsets", roi)
    code, out = run_cli("dataset", "build", str(spec), "--out", str(roots / "ds"))
    print(f"\n{out}")
    assert code == 2 and "Traceback" not in out and "roi.alias: String should match pattern" in out
    assert not (roots / "ds").exists()


@pytest.mark.timeout(300)
def test_a_hough_roi_model_must_be_registered(store, roots, tmp_path):
    """Every upstream model of the stage must be at the alias before any work (the store holds
    only bgo-direction-low): the error names the missing one and the command that fixes it."""
    from dampeml.datasets.build import check_build_inputs
    from dampeml.datasets.spec import load_spec

    spec = tmp_path / "roi.yaml"
    for alias, message in [
        ("production", "no registered model 'bgo-direction-mid'"),
        ("staging", "registered model 'bgo-direction-low' has no alias 'staging'"),
    ]:
        roi = f"roi:\n  source: model\n  upstream: seed\n  alias: {alias}\n"
        _spec(spec, roots / "*.root", "stk-hough", "hough_hits", "hough_offsets", roi)
        with pytest.raises(RegistryError, match=message):
            check_build_inputs(load_spec(spec), str(roots / "ds"), spec)
    assert not (roots / "ds").exists()


# ---- artifact paths


@pytest.mark.parametrize("good", ["model/MLmodel", "data/model/variables/variables.index", "a/./b"])
def test_relative_artifact_paths_pass(good):
    assert not check_artifact_path(good).startswith(("/", ".."))


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "a/../../x",
        "/etc/passwd",
        "%2e%2e/x",
        "%252e%252e/secret",
        "a\\..\\b",
        "s3://b/k",
        "C:/x",
        "a\x00b",
        "",
    ],  # fmt: skip
)
def test_escaping_artifact_paths_are_refused(bad):
    with pytest.raises(ArtifactPathError):
        check_artifact_path(bad)


# ---- models: URIs that do not exist, tampered artifacts


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A private store with one small real network registered as `bgo-direction-low` v1 @production."""
    from dampeml.registry.bootstrap import ensure_experiment, register_catalog

    d = tmp_path_factory.mktemp("sec-registry")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    ensure_experiment(d / "artifacts")
    register_catalog(aliases=("production",), networks=["bgo-direction-low"], aligned=False)
    yield d
    mp.undo()


@pytest.fixture
def artifact(store):
    """The registered model's artifact directory on disk, restored after each test."""
    (mlmodel,) = list((store / "artifacts").rglob("MLmodel"))
    root = mlmodel.parent
    backup = store / "backup"
    if not backup.exists():
        shutil.copytree(root, backup, symlinks=True)
    yield root
    shutil.rmtree(root)
    shutil.copytree(backup, root, symlinks=True)


def test_model_uris_that_do_not_exist_are_refused(store):
    assert check_model_uri("models:/bgo-direction-low@production") == ("bgo-direction-low", "1")
    assert model_exists("models:/bgo-direction-low/1")
    for uri, message in [
        ("models:/bgo-direction-low@staging", "no alias 'staging'"),
        ("models:/bgo-direction-low/7", "no version 7"),
        ("models:/no-such-net@production", "no registered model 'no-such-net'"),
        ("runs:/abc/model", "not a registry URI"),
        ("models:/../../etc@production", "not a registry URI"),
    ]:
        assert not model_exists(uri)
        with pytest.raises(RegistryError, match=message):
            check_model_uri(uri)


def _artifact_weights(artifact) -> list:
    """The registered weights, read straight from the artifact's HDF5 (not through Keras)."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(artifact / "data" / "model.keras") as z:
        h5 = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
    arrays = []
    h5.visititems(lambda name, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return arrays


@pytest.mark.timeout(300)
def test_the_registered_weights_are_loaded_into_a_model_our_builders_make(store, artifact):
    """The loaded model holds exactly the artifact's tensors (read independently with h5py), in a
    network the catalog builds; a fresh build of it holds other (random) weights."""
    import numpy as np

    from dampeml.models.architecture import Architecture

    model = safe_load_model("models:/bgo-direction-low@production")
    stored = sorted(_artifact_weights(artifact), key=lambda a: (a.shape, a.ravel()[:3].tolist()))
    loaded = sorted(model.get_weights(), key=lambda a: (a.shape, a.ravel()[:3].tolist()))
    assert len(stored) == len(loaded) > 0
    assert all(np.array_equal(s, w) for s, w in zip(stored, loaded, strict=True))
    fresh = Architecture("bgo-direction-low").build().get_weights()
    differ = sum(not np.array_equal(a, b) for a, b in zip(model.get_weights(), fresh, strict=True))
    print(f"\n{len(loaded)} tensors equal to the artifact's; {differ} differ from a fresh build")
    assert differ > 0


@pytest.mark.timeout(300)
def test_every_catalog_architecture_round_trips_and_matches_its_saved_file(tmp_path):
    """Each network (and each alignment model) rebuilt from its JSON record describes the same
    layers as the file Keras saves of it: the loader's config check passes every real model."""
    from dampeml.models.architecture import Architecture
    from dampeml.models.catalog import NETWORK_NAMES
    from dampeml.registry.bootstrap import BGO_NETWORKS
    from dampeml.security import check_config_matches, keras_file_config

    records = [Architecture(n) for n in NETWORK_NAMES] + [
        Architecture(n, alignment_head=True) for n in BGO_NETWORKS
    ]
    records.append(Architecture("bgo-direction-low", overrides={"kernel_size": [3, 3]}))
    for arch in records:
        again = Architecture.from_json(arch.to_json(), "test")
        assert again == arch or dict(again.overrides) == {"kernel_size": [3, 3]}
        path = tmp_path / f"{arch.registered_name}.keras"
        arch.build().save(path)
        check_config_matches(keras_file_config(path), again.build(), arch.registered_name)
    print(f"\n{len(records)} architectures rebuilt from JSON match their saved files")


@pytest.mark.parametrize(
    "record, message",
    [
        (None, "no 'architecture' tag"),
        ("not json", "not JSON"),
        ('{"network": "bgo-direction-low", "code": "x"}', "must be a JSON object with keys"),
        ('{"network": "no-such-net"}', "unknown network 'no-such-net'"),
        ('{"network": "bgo-direction-low", "preset": "huge"}', "unknown preset 'huge'"),
        ('{"network": "bgo-direction-low", "overrides": {"kernel_sise": [3]}}', "did you mean 'kernel_size'"),
        ('{"network": "electron-proton", "alignment_head": true}', "has no alignment head"),
    ],
)
def test_architecture_records_are_validated(record, message):
    from dampeml.models.architecture import Architecture, ArchitectureError

    with pytest.raises(ArchitectureError, match=message):
        Architecture.from_json(record, "models:/x/1")


def _set_architecture_tag(value: str | None) -> None:
    import mlflow

    from dampeml.registry.tracking import setup_mlflow

    setup_mlflow()  # the store fixture's URI, whatever an earlier test left in mlflow's globals
    client = mlflow.MlflowClient()
    if value is None:
        client.delete_model_version_tag("bgo-direction-low", "1", "architecture")
    else:
        client.set_model_version_tag("bgo-direction-low", "1", "architecture", value)


@pytest.mark.timeout(300)
def test_a_version_without_or_with_a_wrong_architecture_record_is_refused(store):
    from dampeml.models.architecture import Architecture, ArchitectureError

    _set_architecture_tag("x")  # points mlflow at the store, then the original is restored below
    original = Architecture("bgo-direction-low").to_json()
    try:
        _set_architecture_tag(None)
        with pytest.raises(ArchitectureError, match="no 'architecture' tag.*Train and register it again"):
            safe_load_model("models:/bgo-direction-low@production")
        _set_architecture_tag('{"network": "electron-proton"}')
        with pytest.raises(UnsafeModelError, match="describes 'electron-proton', not 'bgo-direction-low'"):
            safe_load_model("models:/bgo-direction-low@production")
    finally:
        _set_architecture_tag(original)
    assert safe_load_model("models:/bgo-direction-low@production").name == "bgo_direction_low"


def _rewrite_keras_file(path, edit) -> None:
    """Apply `edit(members)` to the members of a .keras zip, as an attacker with write access would."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    edit(members)
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


@pytest.mark.timeout(300)
def test_a_tensorflow_op_layer_in_the_file_is_never_built(store, artifact, tmp_path, monkeypatch):
    """The issue's attack: a TensorFlowOpLayer holding a `Save` op, edited into config.json. Keras'
    own loader builds it from the file even in safe_mode; ours refuses before building anything."""
    import json

    import tf_keras as keras

    marker = tmp_path / "written-by-the-model-file"
    target = artifact / "data" / "model.keras"

    def add_op_layer(members):
        cfg = json.loads(members["config.json"])
        layers = cfg["config"]["layers"]
        save = {"name": "evil", "op": "Save", "input": ["evil/f", "evil/n", "evil/d", "evil/x"],
                "attr": {"T": {"list": {"type": ["DT_STRING", "DT_FLOAT"]}}}}  # fmt: skip
        layers.append({"class_name": "TensorFlowOpLayer", "name": "evil",
                       "config": {"name": "evil", "node_def": save, "dtype": "float32",
                                  "constants": {"0": str(marker), "1": ["a", "b"], "2": ["payload"]}},
                       "inbound_nodes": [[[layers[0]["config"]["name"], 0, 0, {}]]]})  # fmt: skip
        members["config.json"] = json.dumps(cfg).encode()

    from tf_keras.src.engine.base_layer import TensorFlowOpLayer

    made, original = [], TensorFlowOpLayer._make_op  # records every op a TensorFlowOpLayer makes

    def spy(self, inputs):
        made.append(self.node_def.op)
        return original(self, inputs)

    monkeypatch.setattr(TensorFlowOpLayer, "_make_op", spy)

    _rewrite_keras_file(target, add_op_layer)
    with pytest.raises(UnsafeModelError, match=r"unexpected classes \['TensorFlowOpLayer'\]"):
        safe_load_model("models:/bgo-direction-low@production")
    assert not marker.exists()
    assert made == []
    # the same file through Keras' loader: it builds the file's op (TensorFlowOpLayer._make_op),
    # then fails on the op's missing output (the IndexError)
    with pytest.raises(IndexError):
        keras.models.load_model(target, safe_mode=True, compile=False)
    print(f"\nkeras.models.load_model(safe_mode=True) made the file's ops: {made}")
    assert made == ["Save"]


@pytest.mark.timeout(300)
def test_weights_of_another_architecture_are_refused(store, artifact, tmp_path):
    """A file whose config.json is intact but whose weights belong to another network."""
    import zipfile

    from dampeml.models.architecture import Architecture

    other = tmp_path / "other.keras"
    Architecture("bgo-direction-low", overrides={"conv_filters": [8, 8]}).build().save(other)
    with zipfile.ZipFile(other) as z:
        weights = z.read("model.weights.h5")

    _rewrite_keras_file(artifact / "data" / "model.keras", lambda m: m.update({"model.weights.h5": weights}))
    with pytest.raises(UnsafeModelError, match="weights do not fit the registered architecture"):
        safe_load_model("models:/bgo-direction-low@production")


def _with_lambda(model):
    import tf_keras as keras

    out = keras.layers.Lambda(lambda t: t + float(len(open("/etc/hostname").read())))(model.output)
    return keras.Model(model.inputs, out)


@pytest.mark.timeout(300)
def test_a_lambda_layer_injected_as_a_saved_model_is_refused(store, artifact):
    """Replace the registry's model.keras by a SavedModel with a Lambda layer: MLflow's loader falls
    back to the SavedModel and Keras loads the Lambda despite safe_mode; safe_load_model refuses."""
    import mlflow

    model = safe_load_model("models:/bgo-direction-low@production")
    (artifact / "data" / "model.keras").unlink()
    _with_lambda(model).save(artifact / "data" / "model", save_format="tf")
    with pytest.raises(UnsafeModelError, match="only the Keras v3 format"):
        safe_load_model("models:/bgo-direction-low@production")
    loaded = mlflow.tensorflow.load_model(
        "models:/bgo-direction-low@production", keras_model_kwargs={"safe_mode": True, "compile": False}
    )
    kinds = [type(layer).__name__ for layer in loaded.layers]
    print(f"\nmlflow.tensorflow.load_model(safe_mode=True) loaded the tampered SavedModel: {kinds[-1]}")
    assert "Lambda" in kinds


@pytest.mark.timeout(300)
def test_a_lambda_or_file_writing_op_in_the_keras_file_is_refused(store, artifact):
    import zipfile

    import tensorflow as tf
    import tf_keras as keras

    model = safe_load_model("models:/bgo-direction-low@production")
    target = artifact / "data" / "model.keras"
    _with_lambda(model).save(target)
    with pytest.raises(UnsafeModelError, match=r"unexpected classes \['Lambda'\]"):
        safe_load_model("models:/bgo-direction-low@production")
    # a TF op on Keras tensors is stored by name and resolved in `tf` at load: edit a harmless one
    # into tf.io.write_file in the file's config.json, as an attacker would
    out = model.output if not isinstance(model.output, list) else model.output[0]
    keras.Model(model.inputs, tf.math.abs(out)).save(target)
    with zipfile.ZipFile(target) as z:
        members = {n: z.read(n) for n in z.namelist()}
    assert b'"math.abs"' in members["config.json"]
    members["config.json"] = members["config.json"].replace(b'"math.abs"', b'"io.write_file"')
    with zipfile.ZipFile(target, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(UnsafeModelError, match=r"unexpected classes \['TFOpLambda'\]"):
        safe_load_model("models:/bgo-direction-low@production")


@pytest.mark.timeout(300)
class _Payload:
    """Unpickling this creates a file: a harmless stand-in for code run from a model artifact."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.timeout(300)
def test_a_pickle_planted_in_the_artifact_is_never_unpickled(store, artifact, tmp_path):
    import pickle

    import mlflow

    marker = tmp_path / "pwned"
    (artifact / "data" / "global_custom_objects.cloudpickle").write_bytes(pickle.dumps(_Payload(str(marker))))
    model = safe_load_model("models:/bgo-direction-low@production")
    assert not marker.exists()
    # and what loaded is the registered model: the artifact's own tensors (read with h5py)
    import numpy as np

    def key(a):
        return (a.shape, a.ravel()[:3].tolist())

    stored, loaded = sorted(_artifact_weights(artifact), key=key), sorted(model.get_weights(), key=key)
    assert len(stored) == len(loaded) > 0 and all(map(np.array_equal, stored, loaded))
    # MLflow's own loader runs it (MLFLOW_ALLOW_PICKLE_DESERIALIZATION defaults to true in 3.17)
    with pytest.raises(Exception):  # noqa: B017  (the payload's return value breaks MLflow afterwards)
        mlflow.tensorflow.load_model("models:/bgo-direction-low@production")
    print(f"\nmlflow.tensorflow.load_model ran the planted pickle: {marker.exists()}")
    assert marker.exists()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("tamper", ["pickle", "code", "link", "flavor"])
def test_pickles_bundled_code_links_and_other_flavors_are_refused(store, artifact, tamper):
    if tamper == "pickle":
        (artifact / "data" / "custom_objects.cloudpickle").write_bytes(b"\x80\x04K\x01.")
        match = "pickled"
    elif tamper == "code":
        text = (artifact / "MLmodel").read_text()
        assert "    code: null\n" in text
        text = text.replace("    code: null\n", "    code: code\n")
        (artifact / "MLmodel").write_text(text)
        match = "bundles code"
    elif tamper == "link":
        (artifact / "data" / "extra").symlink_to("/etc")
        match = "links outside"
    else:
        text = (artifact / "MLmodel").read_text().replace("model_type: keras", "model_type: tf2-module")
        (artifact / "MLmodel").write_text(text)
        match = "not a tf-keras model"
    with pytest.raises(UnsafeModelError, match=match):
        safe_load_model("models:/bgo-direction-low@production")


@pytest.mark.timeout(200)
def test_a_local_ray_started_by_init_ray_has_token_auth(tmp_path):
    """Ray >= 2.59 turns token auth on for a new local instance (a token in ~/.ray/auth_token)."""
    import subprocess
    import sys

    code = (
        "import dampeml; from dampeml.runtime import init_ray; import ray\n"
        "init_ray(num_cpus=1)\n"
        "from ray._private.authentication.authentication_utils import get_authentication_mode_name\n"
        "from ray._raylet import get_authentication_mode\n"
        "print('MODE=' + get_authentication_mode_name(get_authentication_mode()))\n"
        "ray.shutdown()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = str(tmp_path)  # a fresh home: the token is generated there
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    modes = [line for line in out.stdout.splitlines() if line.startswith("MODE=")]
    print(f"\n{modes}, token file: {(tmp_path / '.ray' / 'auth_token').exists()}")
    assert modes == ["MODE=token"], out.stderr[-2000:]
    assert (tmp_path / ".ray" / "auth_token").stat().st_size >= 32
