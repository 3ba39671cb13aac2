"""The bad-input corpus: malformed event files, dataset specs and campaigns, each run through the
real CLI of every command that reads it (issue 19, "And beyond the list"). Add a case by adding a
file to the corpus (or a spec or campaign to its table); every command below takes it.

What every refusal must look like: exit code 2 (bad input, as for a usage error; 1 is a job that
could not finish),
one `error:` line that names the bad input, no Python traceback, and nothing half-written (no
output folder that a rerun would mistake for a started one). A job that quarantines per file (a
dataset build, a reprocessing) instead goes on, and lists the bad file with its reason, with
accounting that closes exactly.

Reprocessing runs here only with inputs that are refused whole at planning (no model is loaded;
the registry holds alias records only, see `alias_registry`). Per-event damage through the chain
(NaN energies, corrupt baskets, repeated identities, an unknown `mode` among good files) runs with
real registered models in tests/test_reprocess.py (`mixed_inputs`, `hostile_inputs`), minutes each.
Hostile model artifacts (pickles, bundled code, links, Lambda and TensorFlowOpLayer configs,
weights of another architecture) are in tests/test_security.py and are not repeated here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from dampeml.io import schema
from dampeml.io.root_reader import read_events
from dampeml.io.root_writer import write_event_file
from tests.cli_runner import run_cli
from tests.conftest import make_file

N = 30  # events per corpus file: small, so that the dataset build below runs in seconds

# ---- the corpus of event files ----------------------------------------------------------------
# name -> (what is wrong, a word the error or quarantine reason must contain)
WHOLE_FILE = {
    "zero_bytes": ("an empty (0-byte) file", "not a readable ROOT file"),
    "no_events": ("a valid tree with no entries", "holds no events"),
    "not_root": ("a text file named .root", "not a readable ROOT file"),
    "wrong_tree": ("the events under a tree named 'tree'", "no 'events' tree"),
    "missing_branch": ("no bgo_energy branch", "missing branches: bgo_energy"),
    "bogus_mode": ("metadata mode: bogus", "unknown mode 'bogus'"),
    "metadata_list": ("metadata that is a JSON list", "metadata is a JSON list"),
    "wrong_shape": ("bgo_energy of 14x20 bars per event", "bgo_energy has shape"),
}
# the header is whole, the events are lost: refused by the strict reader; a job quarantines each
# of its event ranges with the reader's reason (its header still claims the entries)
TRUNCATED = "truncated"  # the first 60% of a good file
# per-event damage: name -> (entries damaged, the reason each gets)
PER_EVENT = {
    "nan_bgo": ([3, 17], "non-finite values in bgo_energy"),
    "inf_psd": ([5], "non-finite values in psd_energy"),
    "negative_bgo": ([0, 29], "negative energy in bgo_energy"),
    "overflow_bgo": ([8], "non-finite values in bgo_energy"),  # 1e39 MeV: inf as float32
    "bad_channel": ([11], "stk_channel outside 0-3071"),
}
# readable files whose values are odd but legal: they must go through unharmed
ACCEPTED = ("extra_branch", "huge_values")
DUPLICATES = "duplicates"  # entries 20-29 repeat the identities of entries 0-9
DUPLICATED = list(range(20, 30))


def _write_raw(path: Path, events: dict, metadata: dict | None, tree_name=schema.TREE_NAME, extra=None):
    """Write a tree as the writer would, but with freedom the writer does not give (another tree
    name, shapes or branches outside the schema)."""
    tree = {k: v for k, v in events.items() if k not in schema.JAGGED}
    tree["stk"] = ak.zip({k[len("stk_") :]: events[k] for k in schema.JAGGED if k in events})
    tree.update(extra or {})
    with uproot.recreate(path) as f:
        if metadata is not None:
            f[schema.METADATA_KEY] = json.dumps(metadata)
        f.mktree(tree_name, tree)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """One good MC file and a damaged copy of it per case, each in its own folder (a glob per case),
    each with its own run_id (so copies repeat no identity of another file)."""
    root = tmp_path_factory.mktemp("corpus")
    good = make_file(root / "good" / "good.root", "proton", N, 100, 1e4, seed=91)
    events = read_events(good)
    meta = {"mode": "mc", "generation": {"particle": "proton"}, "run_id": 91}
    files: dict[str, Path] = {"good": good}

    def put(name: str, run: int, **changes) -> Path:
        ev = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in events.items()}
        ev["run_id"] = np.full(N, run, dtype=np.int64)
        ev.update(changes)
        return write_event_file(root / name / f"{name}.root", ev, {**meta, "run_id": run})

    for name in (*WHOLE_FILE, TRUNCATED, *PER_EVENT, *ACCEPTED, DUPLICATES):
        (root / name).mkdir()
    files["zero_bytes"] = root / "zero_bytes" / "zero_bytes.root"
    files["zero_bytes"].write_bytes(b"")
    files["no_events"] = write_event_file(
        root / "no_events" / "no_events.root", {k: v[:0] for k, v in events.items()}, meta
    )
    whole = write_event_file(  # a copy with identities of its own, then cut
        tmp_path_factory.mktemp("corpus-src") / "t.root", {**events, "run_id": np.full(N, 1009)}, meta
    )
    data = whole.read_bytes()
    files["truncated"] = root / "truncated" / "truncated.root"
    files["truncated"].write_bytes(data[: int(len(data) * 0.6)])
    files["not_root"] = root / "not_root" / "not_root.root"
    files["not_root"].write_text("run_id,event_id\n1,2\n" * 40)
    files["wrong_tree"] = _write_raw(root / "wrong_tree" / "wrong_tree.root", events, meta, tree_name="tree")
    files["missing_branch"] = write_event_file(
        root / "missing_branch" / "missing_branch.root",
        {k: v for k, v in events.items() if k != "bgo_energy"},
        meta,
    )
    bogus = write_event_file(root / "bogus_mode" / "bogus_mode.root", events, {**meta, "mode": "bogus"})
    files["bogus_mode"] = bogus
    files["metadata_list"] = _write_raw(root / "metadata_list" / "metadata_list.root", events, None)
    with uproot.update(files["metadata_list"]) as f:
        f[schema.METADATA_KEY] = json.dumps(["mode", "mc"])
    narrow = dict(events, bgo_energy=events["bgo_energy"][:, :, :20].copy())
    files["wrong_shape"] = _write_raw(root / "wrong_shape" / "wrong_shape.root", narrow, meta)

    bgo, psd = events["bgo_energy"], events["psd_energy"]
    nan, inf, neg, over = bgo.copy(), psd.copy(), bgo.copy(), bgo.copy()
    nan[PER_EVENT["nan_bgo"][0], 7, 11] = np.nan
    inf[PER_EVENT["inf_psd"][0], 1, 3] = np.inf
    neg[PER_EVENT["negative_bgo"][0], 2, 5] = -40.0
    with np.errstate(over="ignore"):
        over[PER_EVENT["overflow_bgo"][0], 4, 4] = np.float64(1e39).astype(np.float32)  # a writer's overflow
    channel = ak.to_list(events["stk_channel"])
    channel[PER_EVENT["bad_channel"][0][0]][0] = 5000  # the event has clusters (asserted below)
    files["nan_bgo"] = put("nan_bgo", 1001, bgo_energy=nan)
    files["inf_psd"] = put("inf_psd", 1002, psd_energy=inf)
    files["negative_bgo"] = put("negative_bgo", 1003, bgo_energy=neg)
    files["overflow_bgo"] = put("overflow_bgo", 1004, bgo_energy=over)
    files["bad_channel"] = put("bad_channel", 1005, stk_channel=ak.Array(channel))

    huge = bgo.copy()
    huge[np.arange(0, N, 3)] *= 1e6  # 10^6 times every bar: PeV-EeV deposits, finite in float32
    files["huge_values"] = put("huge_values", 2**40, bgo_energy=huge, event_id=events["event_id"] + 2**50)
    extra = dict(events, run_id=np.full(N, 1007, dtype=np.int64))
    files["extra_branch"] = _write_raw(
        root / "extra_branch" / "extra_branch.root",
        extra,
        {**meta, "run_id": 1007},
        extra={"calibration_flag": np.arange(N, dtype=np.int32)},
    )
    ids = events["event_id"].copy()
    ids[DUPLICATED] = ids[: len(DUPLICATED)]
    files[DUPLICATES] = put(DUPLICATES, 1008, event_id=ids)
    return files


def _refused(code: int, out: str, *names: object) -> None:
    """Exit 2 (bad input), one `error:` line, no traceback, and every name in it."""
    print(f"\n{out}")
    assert code == 2, (code, out)
    assert "Traceback" not in out and out.count("error:") == 1, out
    flat = "".join(out.split())  # a name's own spaces do not matter
    for name in names:
        assert "".join(str(name).split()) in flat, (name, out)


def _nothing_at(path: Path) -> None:
    """No output left behind: the path is absent, or an empty folder made before the call."""
    assert not path.exists() or (path.is_dir() and not any(path.iterdir())), sorted(path.rglob("*"))


@pytest.fixture(scope="module", autouse=True)
def _ray_for_module():
    """One local Ray for the module, started outside the CLI runs (each of which then joins it):
    started inside one, its log handlers would keep that run's captured output stream."""
    import ray

    from dampeml.runtime import init_ray

    init_ray(num_cpus=2, object_store_memory=300 * 2**20)
    yield
    ray.shutdown()


# ---- dampeml sim-plots: the strict reader refuses any damage, naming the file


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", [*WHOLE_FILE, TRUNCATED, *PER_EVENT])
def test_sim_plots_refuses_a_damaged_file_by_name(corpus, tmp_path, name):
    out = tmp_path / "plots"
    code, text = run_cli("sim-plots", corpus["good"], corpus[name], "--out", out)
    if name in PER_EVENT:
        why = f"bad events, e.g. event_id {PER_EVENT[name][0][0]}: {PER_EVENT[name][1]}"
    else:
        why = WHOLE_FILE[name][1] if name in WHOLE_FILE else "truncated"
    _refused(code, text, corpus[name], why)
    _nothing_at(out)


@pytest.mark.timeout(180)
def test_sim_plots_takes_odd_but_legal_files(corpus, tmp_path):
    out = tmp_path / "plots"  # repeated identities too: a plot needs no unique (run_id, event_id)
    code, text = run_cli("sim-plots", *(corpus[name] for name in (*ACCEPTED, DUPLICATES)), "--out", out)
    assert code == 0 and "Traceback" not in text, text
    assert sorted(p.name for p in out.glob("*.png")), text


@pytest.mark.timeout(60)
def test_sim_plots_refuses_a_missing_file_and_a_folder(corpus, tmp_path):
    out = tmp_path / "plots"
    code, text = run_cli("sim-plots", tmp_path / "absent.root", "--out", out)
    _refused(code, text, tmp_path / "absent.root", "no such file")
    _nothing_at(out)
    code, text = run_cli("sim-plots", corpus["good"].parent, "--out", out)
    _refused(code, text, corpus["good"].parent)
    _nothing_at(out)


# ---- dampeml dataset build: an unreadable file is listed, a bad event quarantined, nothing else lost


def _spec(path: Path, glob: str, **changes) -> Path:
    """A small file-source spec reading `glob` (every field as the shipped specs spell it)."""
    import yaml

    spec = {
        "name": "bad-inputs",
        "kind": "bgo-direction",
        "sources": [{"type": "files", "glob": glob, "events_per_unit": 1000}],
        "features": ["bgo_image"],
        "targets": ["track"],
        "max_quarantine_fraction": 1.0,
        **changes,
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", WHOLE_FILE)
def test_dataset_build_of_only_an_unreadable_file_is_refused_before_writing(corpus, tmp_path, name):
    spec = _spec(tmp_path / "spec.yaml", str(corpus[name].parent / "*.root"))
    out = tmp_path / "ds"
    code, text = run_cli("dataset", "build", spec, "--out", out, "--limit-events", "10")
    _refused(code, text, corpus[name], WHOLE_FILE[name][1], "no readable events")
    _nothing_at(out)
    code, text = run_cli("dataset", "build", spec, "--out", out, "--limit-events", "10")  # a rerun: the same
    _refused(code, text, corpus[name], "no readable events")


@pytest.mark.timeout(240)
def test_dataset_build_quarantines_each_bad_file_and_event_with_its_reason(corpus, tmp_path):
    from dampeml.io.datasource import DUPLICATE

    root = corpus["good"].parent.parent
    spec = _spec(tmp_path / "spec.yaml", str(root / "*" / "*.root"))
    out = tmp_path / "ds"
    code, text = run_cli("dataset", "build", spec, "--out", out, "--limit-events", "1000")
    print(text)
    assert code == 0 and "Traceback" not in text, text
    manifest = json.loads((out / "manifest.json").read_text())
    acc = manifest["accounting"]
    readable = ["good", TRUNCATED, *PER_EVENT, *ACCEPTED, DUPLICATES]
    assert acc["read"] == N * len(readable), acc
    assert sorted(acc["unreadable_files"]) == sorted(str(corpus[n]) for n in WHOLE_FILE), acc
    want: dict[str, int] = {}
    for entries, reason in PER_EVENT.values():
        want[reason] = want.get(reason, 0) + len(entries)
    want[DUPLICATE] = len(DUPLICATED)
    lost = {why: n for why, n in acc["quarantined"].items() if "truncated or corrupt" in why}
    assert sum(lost.values()) == N, acc  # the reader's reason names the range and the cause
    assert {why: n for why, n in acc["quarantined"].items() if why not in lost} == want, acc
    want.update(lost)
    assert acc["written"] + sum(acc["filtered"].values()) + sum(want.values()) == acc["read"], acc

    lines = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
    files = {ln["file"]: ln["reason"] for ln in lines if "event" in ln and ln["event"] is None}
    for name, (_, why) in WHOLE_FILE.items():  # the whole file, with its reason
        assert why in files[str(corpus[name])], (name, files)
    by_file: dict[str, list[str]] = {}
    ranges = [ln for ln in lines if "entries" in ln]  # an unreadable range: one line, its bounds
    assert [(Path(ln["file"]).stem, ln["entries"]) for ln in ranges] == [(TRUNCATED, [0, N])], ranges
    assert "truncated or corrupt" in ranges[0]["reason"], ranges
    for ln in lines:
        if ln.get("entry") is not None:
            by_file.setdefault(Path(ln["file"]).stem, []).append(ln["reason"])
    assert by_file == {
        **{n: [why] * len(entries) for n, (entries, why) in PER_EVENT.items()},
        DUPLICATES: [DUPLICATE] * len(DUPLICATED),
    }, by_file


# ---- malformed dataset specs: `dataset build` refuses them by file and field, before writing

SPECS = {
    # name -> (text of the spec, or changes to a good one; what the error must name)
    "yaml_syntax": ("name: bad-inputs\nkind: [bgo-direction\n", "not valid YAML"),
    "not_a_mapping": ("- bgo_image\n- track\n", "a dataset spec is a YAML mapping"),
    "empty_file": ("", "a dataset spec is a YAML mapping, got NoneType"),
    "unknown_key": ({"colour": "blue"}, "colour"),
    "wrong_type": ({"max_quarantine_fraction": "some"}, "max_quarantine_fraction"),
    "unknown_feature": ({"features": ["bgo_imag"]}, "features.0"),
    "bad_split": ({"split": {"train": 0.9, "val": 0.9, "test": 0.1}}, "sum to 1"),
    "bad_name": ({"name": "../escape"}, "name"),
    "glob_matches_nothing": (
        {"sources": [{"type": "files", "glob": "{here}/nothing-*.root"}]},
        "matches no file",
    ),
    "unknown_particle": (
        {
            "sources": [
                {
                    "type": "simulation",
                    "particles": {"muon": {"events": 10, "energy_min": 1, "energy_max": 2}},
                }
            ]
        },
        "unknown particles ['muon']",
    ),
}


def _bad_spec(path: Path, good_glob: str, case: str) -> Path:
    content, _ = SPECS[case]
    if isinstance(content, str):
        path.write_text(content)
        return path
    changes = json.loads(json.dumps(content).replace("{here}", str(path.parent)))
    return _spec(path, good_glob, **changes)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", SPECS)
def test_dataset_build_refuses_a_malformed_spec_by_file_and_field(corpus, tmp_path, case):
    spec = _bad_spec(tmp_path / f"{case}.yaml", str(corpus["good"]), case)
    out = tmp_path / "ds"
    code, text = run_cli("dataset", "build", spec, "--out", out, "--limit-events", "10")
    named = "nothing-*.root" if case == "glob_matches_nothing" else spec.name  # the glob, or the file
    _refused(code, text, named, SPECS[case][1])
    _nothing_at(out)


@pytest.mark.timeout(60)
def test_dataset_build_refuses_a_missing_spec(tmp_path):
    code, text = run_cli("dataset", "build", tmp_path / "absent.yaml", "--out", tmp_path / "ds")
    _refused(code, text, tmp_path / "absent.yaml", "no such dataset spec")
    _nothing_at(tmp_path / "ds")


# ---- malformed campaigns: `dampeml tune` checks them whole before Ray (run_campaign never reached)

CAMPAIGN = {
    "name": "bad-inputs",
    "network": "bgo-direction-low",
    "dataset": "spec.yaml",
    "search_space": {"model.kernel_size": {"grid": [[4, 4], [3, 5]]}},
    "metric": "val_loss",
    "epochs": 1,
}
CAMPAIGNS = {
    # name -> (text, or changes to CAMPAIGN (None: drop the key); what the error must name)
    "yaml_syntax": ("name: x\nsearch_space: {model.kernel_size: {grid: [[4, 4]}\n", "not valid YAML"),
    "not_a_mapping": ("[1, 2, 3]\n", "a campaign file is a YAML mapping"),
    "unknown_key": ({"colour": "blue"}, "colour"),
    "loader_field": ({"source": "/elsewhere.yaml"}, "source: unknown field"),
    "wrong_type": ({"epochs": "many"}, "epochs"),
    "missing_network": ({"network": None}, "network"),
    "unknown_network": ({"network": "bgo-direction-huge"}, "bgo-direction-huge"),
    "empty_search_space": ({"search_space": {}}, "search_space"),
    "two_samplers": ({"search_space": {"train.base_lr": {"grid": [0.1], "choice": [0.2]}}}, "exactly one"),
    "bad_bounds": ({"search_space": {"train.base_lr": {"loguniform": [0.0, 1.0]}}}, "low > 0"),
    "bad_key": ({"search_space": {"kernel_size": {"grid": [3]}}}, "search_space.kernel_size"),
    "unknown_train_field": (
        {"search_space": {"train.momentum": {"grid": [0.9]}}},
        "search_space.train.momentum",
    ),
    "bad_model_value": (
        {"search_space": {"model.no_such_field": {"grid": [1]}}},
        "search_space.model.no_such_field",
    ),
    "bad_dataset_path": ({"search_space": {"dataset.selection.colour": {"grid": [1]}}}, "colour"),
    "missing_spec": ({"dataset": "absent.yaml"}, "absent.yaml"),
    "malformed_spec": ({"dataset": "broken.yaml"}, "broken.yaml"),
    "spec_of_another_kind": ({"dataset": "other-kind.yaml"}, "electron-proton"),
    "unknown_metric": ({"metric": "val_nonsense"}, "val_nonsense"),
}


@pytest.fixture
def campaign_dir(tmp_path, corpus) -> Path:
    """A folder with a good spec, a malformed one and one of another kind, for campaigns to name."""
    d = tmp_path / "campaign"
    d.mkdir()
    _spec(d / "spec.yaml", str(corpus["good"]))
    (d / "broken.yaml").write_text("name: [unclosed\n")
    _spec(d / "other-kind.yaml", str(corpus["good"]), kind="electron-proton", targets=["particle"], name="ep")
    return d


@pytest.mark.timeout(60)
@pytest.mark.parametrize("case", CAMPAIGNS)
def test_tune_refuses_a_malformed_campaign_by_file_and_field(campaign_dir, monkeypatch, case):
    import yaml

    def reached(*args, **kwargs):
        raise AssertionError("run_campaign was reached: the campaign must be refused first")

    monkeypatch.setattr("dampeml.tuning.run.run_campaign", reached)
    content, why = CAMPAIGNS[case]
    path = campaign_dir / f"{case}.yaml"
    if isinstance(content, str):
        path.write_text(content)
    else:
        fields = {k: v for k, v in {**CAMPAIGN, **content}.items() if v is not None}
        path.write_text(yaml.safe_dump(fields, sort_keys=False))
    workdir = campaign_dir / "work"
    code, text = run_cli("tune", path, "--workdir", workdir)
    _refused(code, text, path.name, why)
    _nothing_at(workdir)


@pytest.mark.timeout(60)
def test_tune_takes_the_good_campaign_of_this_table(campaign_dir, monkeypatch):
    """The table's base campaign is valid: each case above fails for its own change only."""
    import yaml

    from dampeml.tuning.campaign import load_campaign

    (campaign_dir / "good.yaml").write_text(yaml.safe_dump(CAMPAIGN))
    assert load_campaign(campaign_dir / "good.yaml").n_trials() == 2


# ---- dampeml reprocess: every unusable file quarantined whole, with its reason; nothing loaded


@pytest.fixture(scope="module")
def alias_registry(tmp_path_factory):
    """An MLflow store where every network of the chain has a version at @production, as records
    only (no weights: registering the real models costs minutes here). The jobs below never load a
    model: all their inputs are refused at planning, after the alias is resolved. A job that
    reached a model would fail on the missing weights, loudly."""
    from mlflow import MlflowClient

    from dampeml.reconstruction.chain import NETWORK_OF_FIELD
    from dampeml.registry.bootstrap import ensure_experiment

    d = tmp_path_factory.mktemp("alias-registry")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        ensure_experiment(d / "artifacts")
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        for name in NETWORK_OF_FIELD.values():
            client.create_registered_model(name)
            version = client.create_model_version(name, source=str(d / "no-weights" / name))
            client.set_registered_model_alias(name, "production", version.version)
    return uri


@pytest.mark.timeout(180)
def test_reprocess_quarantines_every_unusable_file_with_its_reason(
    corpus, alias_registry, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", alias_registry)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in WHOLE_FILE:
        shutil.copyfile(corpus[name], inputs / f"{name}.root")
    out = tmp_path / "reco"
    for attempt in ("first", "rerun"):  # a rerun finds the same, and loses nothing
        code, text = run_cli("reprocess", "--input", inputs / "*.root", "--out", out, "--num-cpus", "2")
        print(attempt, text)
        assert code == 0 and "Traceback" not in text and "error:" not in text, text
        summary = json.loads((out / "summary.json").read_text())
        assert summary["totals"]["unreadable_files"] == len(WHOLE_FILE), summary["totals"]
        assert summary["totals"]["events"] == summary["totals"]["written"] == 0, summary["totals"]
        lines = [json.loads(x) for x in (out / "quarantine.jsonl").read_text().splitlines()]
        assert len(lines) == len(WHOLE_FILE), lines
        reasons = {Path(ln["file"]).stem: ln["reason"] for ln in lines}
        for name, (_, why) in WHOLE_FILE.items():
            assert why in reasons[name], (name, reasons)
        assert all(ln["entry"] is None for ln in lines), lines
        assert not list(out.rglob("*.parquet")), sorted(out.rglob("*"))  # no output for no event


@pytest.mark.timeout(120)
def test_reprocess_refuses_a_glob_that_matches_nothing_before_writing(alias_registry, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", alias_registry)
    out = tmp_path / "reco"
    code, text = run_cli("reprocess", "--input", tmp_path / "none-*.root", "--out", out, "--num-cpus", "2")
    _refused(code, text, "none-*.root")
    _nothing_at(out)
