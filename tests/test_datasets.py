"""Dataset platform: specs, splits, accounting with bad files, determinism, resume, the loader."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from dampeml.datasets.build import DatasetBuildError, DatasetJobError, build_dataset
from dampeml.datasets.loader import DatasetError, network_dataset
from dampeml.datasets.spec import DatasetSpec, SpecError, load_spec
from dampeml.datasets.split import assign_split
from dampeml.detector.simulation import PREVIOUS_SIMULATION_VERSION
from dampeml.io.datasource import DUPLICATE
from dampeml.io.root_reader import read_events
from dampeml.io.root_writer import write_event_file
from tests.conftest import make_file

REPO = Path(__file__).resolve().parents[1]
DESIGN_NETWORKS = (
    "bgo-direction-low",
    "bgo-direction-mid",
    "bgo-direction-high",
    "stk-hough-coarse",
    "stk-hough-precise",
    "inelastic-raw-stk",
    "inelastic-hough",
    "electron-proton",
)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from dampeml.runtime import init_ray

    init_ray(num_cpus=4)
    yield
    ray.shutdown()


def _write_spec(tmp_path: Path, spec: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def _sim_spec(name: str = "t", events: int = 300, per_unit: int = 100, **extra) -> dict:
    spec = {
        "name": name,
        "kind": "bgo-direction",
        "features": ["bgo_image"],
        "targets": ["track", "particle"],
        "sources": [
            {
                "type": "simulation",
                "seed": 3,
                "events_per_unit": per_unit,
                "particles": {
                    "proton": {"events": events, "energy_min": 100, "energy_max": 1e4},
                    "electron": {"events": events // 2, "energy_min": 100, "energy_max": 1e4},
                },
            }
        ],
    }
    spec.update(extra)
    return spec


def _read_split(uri: str, split: str):
    files = sorted(glob.glob(f"{uri}/{split}/*.parquet"))
    table = pq.read_table(files) if files else None
    return table.sort_by([("run_id", "ascending"), ("event_id", "ascending")]) if table else None


# ---- specs


def test_every_design_network_has_a_spec_and_a_small_variant():
    for name in DESIGN_NETWORKS:
        full = load_spec(REPO / "datasets" / f"{name}.yaml")
        small = load_spec(REPO / "datasets" / f"{name}-small.yaml")
        assert full.kind == small.kind and full.features == small.features
        assert sum(r.events for s in small.sources for r in s.particles.values()) < 5000
        assert full.spec_hash() != small.spec_hash()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"features": []}, "features: List should have at least 1 item"),
        ({"split": {"train": 0.7, "val": 0.1, "test": 0.1}}, "sum to 1"),
        ({"features": ["hough_hits"], "kind": "stk-hough"}, "need an `roi:` section"),
        ({"roi": {"source": "model"}}, "roi.upstream .* is given exactly when roi.source is 'model'"),
        ({"roi": {"source": "axis-fit", "upstream": "seed"}}, "exactly when roi.source is 'model'"),
        (
            {"roi": {"source": "axis-fit", "coarse_everywhere": True}},
            "coarse_everywhere .* only with source 'model'",
        ),
        ({"kind": "muon-tagger"}, "kind: Input should be"),
        (
            {
                "sources": [
                    {
                        "type": "simulation",
                        "particles": {"muon": {"events": 5, "energy_min": 1, "energy_max": 2}},
                    }
                ]
            },
            "unknown particles",
        ),
    ],
)
def test_spec_errors_name_the_file_and_the_field(tmp_path, change, message):
    path = _write_spec(tmp_path, {**_sim_spec(), **change})
    with pytest.raises(SpecError, match=message) as err:
        load_spec(path)
    assert str(path) in str(err.value)


def test_spec_file_problems(tmp_path):
    with pytest.raises(SpecError, match="no such dataset spec"):
        load_spec(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_spec_hash_ignores_layout_not_content(tmp_path):
    a = load_spec(_write_spec(tmp_path, _sim_spec(), "a.yaml"))
    (tmp_path / "b.yaml").write_text("# comment\n" + json.dumps(_sim_spec()))
    b = load_spec(tmp_path / "b.yaml")
    c = load_spec(_write_spec(tmp_path, _sim_spec(events=301), "c.yaml"))
    assert a.spec_hash() == b.spec_hash() != c.spec_hash()


def test_split_is_a_function_of_identity_only():
    run = np.full(20000, 42)
    ev = np.arange(20000)
    s1 = assign_split(run, ev)
    order = np.random.default_rng(0).permutation(len(ev))
    s2 = assign_split(run[order], ev[order])
    assert np.array_equal(s1[order], s2)  # order of processing does not matter
    assert np.array_equal(assign_split(run[:100], ev[:100]), s1[:100])  # nor what else is there
    frac = {k: np.mean(s1 == k) for k in ("train", "val", "test")}
    print(f"\nsplit fractions {frac}")
    assert abs(frac["train"] - 0.8) < 0.015 and abs(frac["val"] - 0.1) < 0.01


# ---- building


@pytest.fixture(scope="module")
def mixed_files(tmp_path_factory):
    """Two good MC files, one with NaN events, one truncated, one not ROOT at all."""
    d = tmp_path_factory.mktemp("mixed")
    good1 = make_file(d / "a_good.root", "proton", 200, 100, 1e4, seed=31)
    make_file(d / "b_good.root", "electron", 150, 100, 1e4, seed=32)
    events = read_events(good1)
    bgo = events["bgo_energy"].copy()
    bgo[[3, 17, 40]] = np.nan
    events["bgo_energy"] = bgo
    events["run_id"] = events["run_id"] + 1000
    write_event_file(d / "c_nan.root", events, {"mode": "mc", "generation": {"particle": "proton"}})
    data = (d / "b_good.root").read_bytes()
    (d / "d_truncated.root").write_bytes(data[: len(data) // 2])
    (d / "e_junk.root").write_text("this is not a ROOT file\n" * 20)
    return d


def test_accounting_closes_with_corrupt_and_truncated_files(tmp_path, mixed_files, ray_local):
    spec = load_spec(
        _write_spec(
            tmp_path,
            {
                **_sim_spec(),
                "sources": [{"type": "files", "glob": str(mixed_files / "*.root"), "events_per_unit": 80}],
                "selection": {"deposit_gev": {"min": 20.0}},
                "max_quarantine_fraction": 0.5,
            },
        )
    )
    summary = build_dataset(spec, str(tmp_path / "ds"))
    acc = summary.manifest["accounting"]
    print(f"\naccounting: {acc}")
    quarantined = sum(acc["quarantined"].values())
    filtered = sum(acc["filtered"].values())
    assert acc["read"] == acc["written"] + filtered + quarantined
    assert acc["quarantined"]["non-finite values in bgo_energy"] == 3
    assert acc["unreadable_files"] == [str(mixed_files / "e_junk.root")]
    # the truncated file: either unreadable as a whole or its ranges quarantined, never silently lost
    truncated = str(mixed_files / "d_truncated.root")
    lines = [json.loads(x) for x in (tmp_path / "ds" / "quarantine.jsonl").read_text().splitlines()]
    assert any(x["file"] == truncated for x in lines) or truncated in acc["unreadable_files"]
    assert {x["event_id"] for x in lines if x.get("reason") == "non-finite values in bgo_energy"} == {
        3,
        17,
        40,
    }
    # written rows: the good events of the readable files, each once
    rows = sum(_read_split(str(tmp_path / "ds"), s).num_rows for s in ("train", "val", "test"))
    assert rows == acc["written"] > 0
    assert filtered == acc["filtered"].get("deposited energy outside the selected range", 0)

    strict = load_spec(
        _write_spec(
            tmp_path,
            {**spec.model_dump(mode="json"), "name": "strict", "max_quarantine_fraction": 0.001},
            "strict.yaml",
        )
    )
    with pytest.raises(DatasetJobError, match="above the spec's limit max_quarantine_fraction=0.001"):
        build_dataset(strict, str(tmp_path / "strict"))


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    """in/: an MC file, a byte copy of it (every identity repeated across files), a file repeating
    half of its own identities, one whose metadata names an unknown mode, one of the previous simulation
    version; flight/: a flight file."""
    d = tmp_path_factory.mktemp("hostile")
    a = make_file(d / "in" / "a_mc.root", "proton", 60, 100, 1e4, seed=81)
    shutil.copyfile(a, d / "in" / "b_copy.root")
    meta = {"mode": "mc", "generation": {"particle": "proton"}}
    events = read_events(make_file(d / "src" / "c.root", "proton", 40, 100, 1e4, seed=82))
    events["event_id"] = np.concatenate([np.arange(20), np.arange(20)])  # entries 20-39 repeat 0-19
    write_event_file(d / "in" / "c_repeats.root", events, meta)
    bogus = read_events(make_file(d / "src" / "d.root", "proton", 30, 100, 1e4, seed=83))
    write_event_file(d / "in" / "d_bogus.root", bogus, {**meta, "mode": "bogus"})
    write_event_file(
        d / "in" / "e_other_version.root", bogus, {**meta, "simulation_version": PREVIOUS_SIMULATION_VERSION}
    )
    make_file(d / "flight" / "f_flight.root", "proton", 30, 100, 1e4, mode="flight", seed=84)
    return d


def _files_spec(tmp_path: Path, glob_: str, name: str = "files", **extra) -> DatasetSpec:
    spec = {**_sim_spec(name), "sources": [{"type": "files", "glob": glob_, "events_per_unit": 25}]}
    return load_spec(_write_spec(tmp_path, {**spec, **extra}, f"{name}.yaml"))


def _quarantine_lines(uri: Path) -> list[dict]:
    return [json.loads(x) for x in (uri / "quarantine.jsonl").read_text().splitlines()]


@pytest.mark.timeout(300)
def test_unknown_mode_and_repeated_ids_are_quarantined(tmp_path, hostile_files, ray_local):
    spec = _files_spec(tmp_path, str(hostile_files / "in" / "*.root"), max_quarantine_fraction=0.9)
    out = tmp_path / "ds"
    manifest = build_dataset(spec, str(out)).manifest
    acc = manifest["accounting"]
    print(f"\naccounting {acc}; scan {manifest.get('duplicate_scan')}")
    bogus = str(hostile_files / "in" / "d_bogus.root")
    other_version = str(hostile_files / "in" / "e_other_version.root")
    assert acc["unreadable_files"] == [bogus, other_version]  # were built as if they were good files
    lines = _quarantine_lines(out)
    assert [x["reason"] for x in lines if x["file"] == bogus] == [
        "unreadable file: unknown mode 'bogus' in the file's metadata (expected one of mc, flight)"
    ]
    [reason] = [x["reason"] for x in lines if x["file"] == other_version]
    assert f"simulated with simulation version {PREVIOUS_SIMULATION_VERSION}" in reason, reason
    assert acc["read"] == 160 and acc["quarantined"] == {DUPLICATE: 60 + 20}
    assert acc["read"] == acc["written"] + sum(acc["filtered"].values()) + 80
    assert manifest["duplicate_scan"]["events"] == 160 and manifest["duplicate_scan"]["duplicates"] == 80
    # the first occurrence (files sorted, entries in order) is kept; every repeat names it
    kept = {
        (Path(x["file"]).name, x["entry"]): (Path(x["duplicate_of"]["file"]).name, x["duplicate_of"]["entry"])
        for x in lines
        if x["reason"] == DUPLICATE
    }
    assert kept == {("b_copy.root", e): ("a_mc.root", e) for e in range(60)} | {
        ("c_repeats.root", e): ("c_repeats.root", e - 20) for e in range(20, 40)
    }
    tables = [_read_split(str(out), s) for s in ("train", "val", "test")]
    assert all(t is not None for t in tables)
    ids = [
        (r, e)
        for t in tables
        for r, e in zip(t["run_id"].to_pylist(), t["event_id"].to_pylist(), strict=True)
    ]
    assert len(ids) == len(set(ids)) == acc["written"] > 0  # was 160 rows with 80 distinct identities

    # as if killed before committing the units that hold the kept copies (a_mc.root's, the only ones
    # without a quarantined event): the resume keeps the same copies, the committed repeats stay out
    markers = [m for m in (out / "_units").glob("*.json") if not json.loads(m.read_text())["quarantine_list"]]
    assert len(markers) == 3
    for marker in markers:
        marker.unlink()
    resumed = build_dataset(spec, str(out), resume=True)
    assert resumed.units_done_before == resumed.units_total - 3
    assert resumed.manifest["accounting"] == acc and resumed.manifest["splits"] == manifest["splits"]
    for split, table in zip(("train", "val", "test"), tables, strict=True):
        assert _read_split(str(out), split).equals(table), split


def test_find_duplicates_keeps_the_first_occurrence_against_a_plain_loop():
    """The hash-based scan against a dict walked in priority order, on seeded random identities;
    a label may come in several parts (a file read in pieces, the units of one file). The bounded
    scan (items grouped by shared runs, compared a few events at a time) gives the same answer."""
    from dampeml.io.datasource import EventIds, find_duplicates, scan_duplicates

    rng = np.random.default_rng(19)
    for _ in range(200):
        parts, next_entry = [], {}
        for _ in range(rng.integers(1, 6)):
            label, n = f"f{rng.integers(0, 3)}", int(rng.integers(0, 30))
            start = next_entry.get(label, 0)
            next_entry[label] = start + n
            ids = (rng.integers(0, 6, n), rng.integers(-3, 8, n))
            parts.append(EventIds(label, np.arange(start, start + n), *ids))
        owner: dict = {}
        want: dict = {}
        for part in parts:
            for entry, run, event in zip(part.entries, part.run_id, part.event_id, strict=True):
                if (run, event) in owner:
                    want.setdefault(part.label, {})[int(entry)] = owner[(run, event)]
                else:
                    owner[(run, event)] = (part.label, int(entry))
        assert find_duplicates(parts).duplicates == want
        bounded = scan_duplicates(parts, batch_events=int(rng.integers(1, 40)))
        assert bounded.duplicates == want and bounded.events == sum(len(q.entries) for q in parts)


def test_supervised_dataset_refuses_inputs_without_truth(tmp_path, hostile_files):
    flight = hostile_files / "flight" / "f_flight.root"
    out = tmp_path / "ds"
    spec = _files_spec(tmp_path, str(hostile_files / "*" / "[af]_*.root"))
    with pytest.raises(DatasetBuildError, match="no MC truth") as err:  # was built with targets -1 or absent
        build_dataset(spec, str(out))
    print(f"\n{err.value}")
    assert str(err.value).startswith(f"{flight}: a flight file") and "MC files only" in str(err.value)
    sim = _sim_spec("flightsim")
    sim["sources"][0]["mode"] = "flight"
    sim["targets"] = ["track"]  # the spec allows it; the simulated events have no truth
    with pytest.raises(DatasetBuildError, match="source 1 simulates flight-like events.*set `mode: mc`"):
        build_dataset(load_spec(_write_spec(tmp_path, sim, "flightsim.yaml")), str(out))
    assert not out.exists()


def test_training_refuses_a_dataset_without_targets(small_bgo, tmp_path):
    copy = tmp_path / "no-truth"
    shutil.copytree(small_bgo, copy)
    for shard in (copy / "train").glob("*.parquet"):  # as built from flight files before the check
        table = pq.read_table(shard)
        pq.write_table(table.drop_columns([c for c in table.column_names if c.startswith("true_")]), shard)
    with pytest.raises(DatasetError, match="train split has no target true_x_top.*rebuild it from MC files"):
        network_dataset(str(copy), "train", expected_kind="bgo-direction")
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["kind"], manifest["particles"]["val"] = "electron-proton", {"unknown": 5, "proton": 9}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="5 events of the val split have no particle label"):
        network_dataset(str(copy), "val")
    network_dataset(small_bgo, "train", expected_kind="bgo-direction")  # the intact dataset passes


def test_glob_matching_nothing_writes_nothing(tmp_path, ray_local):
    src = tmp_path / "runs"
    spec = _files_spec(tmp_path, str(src / "*.root"))
    out = tmp_path / "ds"
    with pytest.raises(
        DatasetBuildError, match=r"matches no file.*fix the source's `glob`; nothing was written"
    ):
        build_dataset(spec, str(out))
    assert not out.exists()  # _build.json and _tmp/ were left, and the rerun said "already holds a dataset"
    make_file(src / "a.root", "proton", 40, 100, 1e4, seed=85)
    assert build_dataset(spec, str(out)).manifest["accounting"]["read"] == 40


def test_rebuild_gives_the_same_content_and_mix(tmp_path, ray_local):
    spec = load_spec(
        _write_spec(
            tmp_path, {**_sim_spec(events=400, per_unit=200), "selection": {"electron_fraction": 0.25}}
        )
    )
    a = build_dataset(spec, str(tmp_path / "a")).manifest
    b = build_dataset(spec, str(tmp_path / "b")).manifest
    for split in ("train", "val", "test"):
        ta, tb = _read_split(str(tmp_path / "a"), split), _read_split(str(tmp_path / "b"), split)
        assert ta.equals(tb), split
    assert a["splits"] == b["splits"] and a["spec_hash"] == b["spec_hash"]
    particles = {k: sum(a["particles"][s].get(k, 0) for s in a["particles"]) for k in ("proton", "electron")}
    frac = particles["electron"] / (particles["electron"] + particles["proton"])
    print(f"\nelectron fraction written: {frac:.3f} (target 0.25), {particles}")
    assert abs(frac - 0.25) < 0.05
    with pytest.raises(DatasetBuildError, match="pass --resume"):
        build_dataset(spec, str(tmp_path / "a"))
    # a build started under older simulation physics is never finished with today's events
    from dampeml.datasets.process import BUILD_FILE
    from dampeml.detector.simulation import SIMULATION_VERSION

    assert a["simulation_version"] == SIMULATION_VERSION
    assert a["dataset_version"] == f"{spec.name}@{spec.spec_hash()}+sim{SIMULATION_VERSION}"
    build_file = tmp_path / "a" / BUILD_FILE
    started = json.loads(build_file.read_text())
    build_file.write_text(json.dumps({**started, "simulation_version": SIMULATION_VERSION - 1}))
    with pytest.raises(DatasetBuildError, match="same spec, --limit-events and simulation version"):
        build_dataset(spec, str(tmp_path / "a"), resume=True)


def test_killed_build_resumes_to_the_same_dataset(tmp_path, ray_local):
    spec_path = _write_spec(tmp_path, _sim_spec(events=1200, per_unit=100))
    ref = str(tmp_path / "ref")
    build_dataset(load_spec(spec_path), ref)
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "dampeml.cli.main",
        "dataset",
        "build",
        str(spec_path),
        "--out",
        str(out),
        "--num-cpus",
        "2",
    ]
    proc = subprocess.Popen(
        cmd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "_units").glob("*.json"))) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "_units").glob("*.json")))
    print(f"\nkilled after {done} of 18 units")
    assert 3 <= done < 18, "the kill must land mid-build"
    assert not (out / "manifest.json").exists()
    summary = build_dataset(load_spec(spec_path), str(out), resume=True)
    assert summary.units_done_before >= done
    for split in ("train", "val", "test"):
        assert _read_split(ref, split).equals(_read_split(str(out), split)), split


# ---- the loader


@pytest.fixture(scope="module")
def small_bgo(tmp_path_factory, ray_local):
    out = tmp_path_factory.mktemp("bgo") / "ds"
    build_dataset(load_spec(REPO / "datasets" / "bgo-direction-low-small.yaml"), str(out), limit_events=400)
    return str(out)


def test_loader_gives_network_batches_with_stored_targets(small_bgo):
    ds = network_dataset(small_bgo, "train", expected_kind="bgo-direction")
    batch = next(iter(ds.iter_batches(batch_size=16)))
    assert batch["x"].shape == (16, 14, 22, 1) and batch["x"].dtype == np.float32
    assert batch["x"].max() == 1.0 and batch["x"].min() >= 0.0
    table = _read_split(small_bgo, "train")
    stored = np.stack([table.column(f"true_{n}").to_numpy() for n in ("x_top", "y_top", "x_bot", "y_bot")], 1)
    # every target row is one of the stored truth rows (order is not guaranteed)
    assert all(np.any(np.all(np.isclose(stored, row), axis=1)) for row in batch["y"])


def test_loader_errors(small_bgo, tmp_path):
    with pytest.raises(DatasetError, match="is a 'bgo-direction' dataset, this needs 'stk-hough'"):
        network_dataset(small_bgo, "train", expected_kind="stk-hough")
    with pytest.raises(DatasetError, match="no dataset manifest"):
        network_dataset(str(tmp_path), "train")


def test_a_limit_keeps_exactly_that_many_events_in_proportion_even_over_many_small_units():
    from dampeml.datasets.units import WorkUnit, _limit

    units = [WorkUnit(unit_id=f"u{i}", source="file", n_events=25, path="f.root", entry_start=25 * i,
                      particle="proton" if i % 4 else "electron") for i in range(800)]  # fmt: skip
    kept = _limit(units, 200)
    electrons = sum(u.n_events for u in kept if u.particle == "electron")
    print(f"\n200 of 20,000 events over 800 units: {len(kept)} units, {electrons} electrons (expected 50)")
    assert sum(u.n_events for u in kept) == 200 and abs(electrons - 50) <= 1
    assert all(u.entry_start == int(u.unit_id[1:]) * 25 for u in kept)  # each keeps its first events
    assert sum(u.n_events for u in _limit(units[:3], 10)) == 10 and _limit(units[:3], 1000) == units[:3]
