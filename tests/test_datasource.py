"""EventFileDatasource: event ranges as blocks, exact row identity, bad files accounted for."""

from __future__ import annotations

import shutil

import awkward as ak
import numpy as np
import pyarrow as pa
import pytest
import ray

from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.io.datasource import EventFileDatasource, plan_event_files, read_event_files
from dampeml.io.root_reader import EventFileError, read_events
from dampeml.io.root_writer import write_event_file
from dampeml.io.schema import required_branches
from dampeml.runtime import init_ray

N_A, N_B = 300, 250
NAN_EVENTS = (7, 123)  # events of file A whose BGO image gets a NaN


@pytest.fixture(scope="module")
def ray_session():
    init_ray(num_cpus=4, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    branches, metadata = simulate(SimulationConfig("proton", N_A, 100, 1e5, seed=21))
    branches["bgo_energy"][list(NAN_EVENTS), 3, 5] = np.nan
    a = write_event_file(d / "a.root", branches, metadata)
    b = write_event_file(d / "b.root", *simulate(SimulationConfig("helium", N_B, 100, 1e5, seed=22)))
    flight = write_event_file(
        d / "f.root", *simulate(SimulationConfig("proton", 50, 100, 1e4, mode="flight", seed=23))
    )
    truncated = d / "truncated.root"
    shutil.copy(a, truncated)
    with open(truncated, "r+b") as f:
        f.truncate(int(truncated.stat().st_size * 0.6))
    junk = d / "junk.root"
    junk.write_bytes(b"not a root file " * 64)
    return {"a": str(a), "b": str(b), "flight": str(flight), "truncated": str(truncated), "junk": str(junk)}


def blocks(ds: ray.data.Dataset) -> list[pa.Table]:
    return [ray.get(ref) for ref in ds.to_arrow_refs()]


def test_ranges_become_blocks_and_every_event_arrives_once(ray_session, files):
    source = EventFileDatasource([files["a"], files["b"]], events_per_block=100)
    tasks = source.get_read_tasks(parallelism=1)
    assert [t.metadata.num_rows for t in tasks] == [100, 100, 100, 100, 100, 50]
    assert source.get_name() == "EventFiles"

    tables = blocks(read_event_files([files["a"], files["b"]], events_per_block=100))
    for path in (files["a"], files["b"]):  # one file is spread over several blocks
        assert sum(path in t.column("source_file").to_pylist() for t in tables) > 1
    table = pa.concat_tables(tables)
    assert table.num_rows == N_A + N_B
    for path, n in ((files["a"], N_A), (files["b"], N_B)):
        rows = table.filter(pa.compute.equal(table["source_file"], path))
        ids = np.sort(rows["event_id"].to_numpy())
        np.testing.assert_array_equal(ids, np.arange(n))  # none missing, none twice
        np.testing.assert_array_equal(np.sort(rows["entry"].to_numpy()), np.arange(n))


def test_columns_equal_the_file(ray_session, files):
    ds = read_event_files(files["a"], events_per_block=100)
    batch = ds.take_batch(N_A, batch_format="numpy")
    order = np.argsort(batch["entry"])
    np.testing.assert_array_equal(batch["entry"][order], np.arange(N_A))
    batch = {k: v[order] for k, v in batch.items()}
    ref = read_events(files["a"])
    assert batch["bgo_energy"].shape == (N_A, 14, 22)
    assert batch["psd_energy"].shape == (N_A, 2, 41)
    np.testing.assert_array_equal(batch["bgo_energy"], ref["bgo_energy"])
    np.testing.assert_array_equal(batch["true_energy"], ref["true_energy"])
    got = ak.Array([np.asarray(x) for x in batch["stk_pos"]])
    assert ak.all(ak.num(got) == ak.num(ref["stk_pos"]))
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(got)), ak.to_numpy(ak.flatten(ref["stk_pos"])))


def test_bad_events_are_kept_with_their_reason(ray_session, files):
    table = pa.concat_tables(blocks(read_event_files(files["a"], events_per_block=100)))
    reasons = dict(zip(table["entry"].to_pylist(), table["quarantine_reason"].to_pylist(), strict=True))
    assert len(reasons) == N_A
    flagged = sorted(e for e, r in reasons.items() if r)
    assert flagged == list(NAN_EVENTS)
    assert "bgo_energy" in reasons[NAN_EVENTS[0]]


def test_junk_file_raises_at_planning_by_default(files):
    with pytest.raises(EventFileError) as err:
        read_event_files([files["a"], files["junk"]])
    assert err.value.path == files["junk"]
    assert files["junk"] in str(err.value)


def test_truncated_file_raises_naming_file_and_range(ray_session, files):
    ds = read_event_files([files["b"], files["truncated"]], events_per_block=100)
    with pytest.raises(EventFileError) as err:  # Ray's RayTaskError subclasses the cause's type
        ds.materialize()
    assert err.value.path == files["truncated"]
    assert "events" in err.value.problem and files["truncated"] in str(err.value)
    assert err.value.entry_stop - err.value.entry_start == 100


def test_quarantine_accounts_for_every_event(ray_session, files):
    paths = [files["a"], files["truncated"], files["junk"], files["b"]]
    plan = plan_event_files(paths)
    assert [p for p, _ in plan.bad] == [files["junk"]]
    assert {i.path for i in plan.good} | {p for p, _ in plan.bad} == set(paths)  # every input accounted
    assert plan.n_events == N_A + N_A + N_B  # the truncated file's header still claims its entries

    table = pa.concat_tables(blocks(read_event_files(plan, events_per_block=100, on_bad_file="quarantine")))
    assert table.num_rows == plan.n_events
    keys = list(zip(table["source_file"].to_pylist(), table["entry"].to_pylist(), strict=True))
    assert len(set(keys)) == len(keys)  # identity unique

    reason = table["quarantine_reason"].to_numpy(zero_copy_only=False)
    source = table["source_file"].to_numpy(zero_copy_only=False)
    trunc = source == files["truncated"]
    # the truncated file's events are all there as identity + reason, with no data
    np.testing.assert_array_equal(np.sort(table["entry"].to_numpy()[trunc]), np.arange(N_A))
    assert all("cannot read events" in r for r in reason[trunc])
    assert table.filter(pa.array(trunc))["bgo_energy"].null_count == N_A
    # good files: everything but the NaN events is usable
    assert int(((reason == "") & ~trunc).sum()) == N_A + N_B - len(NAN_EVENTS)
    assert int((reason != "").sum()) == N_A + len(NAN_EVENTS)


def test_estimate_is_close_to_the_real_size(ray_session, files):
    source = EventFileDatasource([files["a"], files["b"]], events_per_block=100)
    real = read_event_files([files["a"], files["b"]], events_per_block=100).materialize().size_bytes()
    assert 0.5 * real < source.estimate_inmemory_data_size() < 2 * real


def test_mixed_modes_need_explicit_branches(files):
    with pytest.raises(ValueError, match="mixes mc and flight"):
        plan_event_files([files["a"], files["flight"]])
    plan = plan_event_files([files["a"], files["flight"]], branches=required_branches("flight"))
    assert len(plan.good) == 2 and not plan.bad
    plan = plan_event_files([files["a"], files["flight"]], branches=["bgo_energy", "true_energy"])
    assert [p for p, _ in plan.bad] == [files["flight"]]
    assert "true_energy" in plan.bad[0][1]


def test_glob_and_duplicates(files, tmp_path):
    pattern = files["a"].rsplit("/", 1)[0] + "/[ab].root"
    assert [i.path for i in plan_event_files(pattern).good] == [files["a"], files["b"]]
    with pytest.raises(ValueError, match="more than once"):
        plan_event_files([files["a"], files["a"]])
    with pytest.raises(ValueError, match="no files match"):
        plan_event_files(str(tmp_path / "*.root"))
