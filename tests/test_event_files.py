"""Event files: schema, round trip, determinism, and every bad-input case of the reader."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import uproot

from dampeml import geometry as geo
from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.io import schema
from dampeml.io.root_reader import EventFileError, bad_events, inspect_file, read_events, read_validated
from dampeml.io.root_writer import write_event_file


def _sim(**kw):
    cfg = dict(particle="proton", n_events=150, energy_min=100.0, energy_max=1e4, seed=5)
    cfg.update(kw)
    return simulate(SimulationConfig(**cfg))


def test_round_trip_keeps_every_branch_exactly(tmp_path):
    branches, metadata = _sim()
    path = write_event_file(tmp_path / "rt.root", branches, metadata)
    back = read_validated(path)
    assert set(back) == set(schema.readable_branches("mc", [set(branches)]))  # the widths: version 3 on
    for name, value in branches.items():
        if name in schema.JAGGED:
            assert ak.all(ak.num(back[name]) == ak.num(value)), name
            assert np.array_equal(ak.flatten(back[name]).to_numpy(), ak.flatten(value).to_numpy()), name
        else:
            assert np.array_equal(back[name], np.asarray(value, dtype=schema.numpy_dtype(name))), name
    assert back["bgo_energy"].shape == (150, geo.BGO_N_LAYERS, geo.BGO_N_BARS)
    assert back["bgo_energy"].dtype == np.float32
    with uproot.open(path) as f:
        meta = json.loads(str(f[schema.METADATA_KEY]))
        assert isinstance(f[schema.TREE_NAME], uproot.TTree)
    assert meta["geometry"]["STK_LAYER_Z"] == pytest.approx(list(geo.STK_LAYER_Z))
    assert meta["n_generated"] > 150  # most candidates miss the detector
    assert meta["n_generated"] / 150 > 50  # acceptance below 2%


def test_stk_fields_are_in_range_and_consistent(tmp_path):
    branches, _ = _sim(n_events=300, energy_max=1e5)
    layer, half, chan, pos = (
        ak.flatten(branches[k]).to_numpy() for k in ("stk_layer", "stk_half", "stk_channel", "stk_pos")
    )
    assert layer.min() >= 0 and layer.max() == geo.STK_N_LAYERS - 1
    assert set(np.unique(half)) == {0, 1}
    assert chan.min() >= 0 and chan.max() < geo.STK_CHANNELS_PER_HALF
    # the channel is the readout strip under the measured coordinate
    expect = np.floor((pos.astype(np.float64) + geo.STK_HALF_WIDTH) / geo.STK_READOUT_PITCH)
    assert np.array_equal(chan, np.clip(expect, 0, geo.STK_CHANNELS_PER_HALF - 1).astype(chan.dtype))
    # every event has the primary's hits: on average ~11-12 of 12 layers when not interacting
    prim = ak.sum(branches["stk_is_primary"], axis=1).to_numpy()
    clean = ~branches["true_inelastic"]
    assert prim[clean].mean() > 11.0


def test_same_seed_same_events_other_seed_other_events():
    a, ma = _sim(seed=42)
    b, mb = _sim(seed=42)
    c, _ = _sim(seed=43)
    assert ma["n_generated"] == mb["n_generated"]
    for name in ("bgo_energy", "true_x_top", "true_energy"):
        assert np.array_equal(a[name], b[name])
    assert ak.all(a["stk_signal"] == b["stk_signal"])
    assert not np.array_equal(a["true_energy"], c["true_energy"])


def test_short_run_is_prefix_of_long_run():
    short, _ = _sim(n_events=1000, seed=9)
    long, _ = _sim(n_events=1500, seed=9)
    assert np.array_equal(short["bgo_energy"], long["bgo_energy"][:1000])


def test_flight_file_has_no_truth_and_records_run_conditions(tmp_path):
    branches, metadata = _sim(mode="flight")
    path = write_event_file(tmp_path / "flight.root", branches, metadata)
    info = inspect_file(path)
    assert info.mode == "flight"
    assert not [b for b in info.branches if b.startswith("true_") or b == "stk_is_primary"]
    cond = info.metadata["simulation_only_flight_conditions"]
    assert 0.5 < max(abs(v) for v in cond["bgo_offset_mm"]) < 3.0
    with pytest.raises(EventFileError, match="flight files carry no truth"):
        read_events(path, branches=["true_x_top"])


# ---- bad input: each case gives one EventFileError naming the file and the problem


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    branches, metadata = _sim()
    return write_event_file(tmp_path_factory.mktemp("good") / "good.root", branches, metadata)


def _expect_error(path, match):
    with pytest.raises(EventFileError, match=match) as err:
        read_validated(path)
    assert str(path) in str(err.value)


def test_truncated_file(tmp_path, good_file):
    data = good_file.read_bytes()
    for frac in (0.3, 0.7, 0.95):
        bad = tmp_path / f"trunc{frac}.root"
        bad.write_bytes(data[: int(len(data) * frac)])
        _expect_error(bad, "truncated|corrupt|not a readable")


def test_corrupt_bytes(tmp_path, good_file):
    data = np.frombuffer(good_file.read_bytes(), dtype=np.uint8).copy()
    rng = np.random.default_rng(0)
    idx = rng.integers(len(data) // 4, len(data), 4000)
    data[idx] = rng.integers(0, 256, len(idx)).astype(np.uint8)
    bad = tmp_path / "corrupt.root"
    bad.write_bytes(data.tobytes())
    _expect_error(bad, "truncated|corrupt|not a readable|unreadable")


def test_not_a_root_file_and_missing_file(tmp_path):
    junk = tmp_path / "junk.root"
    junk.write_text("not root at all\n" * 50)
    _expect_error(junk, "not a readable ROOT file")
    _expect_error(tmp_path / "absent.root", "no such file")


def _rewrite(tmp_path, good_file, name, drop=(), replace=None, n=None):
    events = read_events(good_file)
    if n is not None:
        events = {k: v[:n] for k, v in events.items()}
    for k in drop:
        events.pop(k)
    events.update(replace or {})
    return write_event_file(tmp_path / name, events, inspect_file(good_file).metadata)


def test_missing_branch(tmp_path, good_file):
    bad = _rewrite(tmp_path, good_file, "nobgo.root", drop=["bgo_energy"])
    _expect_error(bad, "missing branches: bgo_energy")


def test_wrong_shape(tmp_path, good_file):
    path = tmp_path / "shape.root"
    events = read_events(good_file)
    tree = {k: v for k, v in events.items() if k not in schema.JAGGED}
    tree["bgo_energy"] = tree["bgo_energy"][:, :, :20].copy()
    tree["stk"] = ak.zip({k[4:]: events[k] for k in schema.JAGGED if k in events})
    with uproot.recreate(path) as f:
        f[schema.METADATA_KEY] = json.dumps(inspect_file(good_file).metadata)
        f.mktree(schema.TREE_NAME, tree)
    _expect_error(path, r"bgo_energy has shape \(14, 20\)")


def test_empty_file(tmp_path, good_file):
    path = tmp_path / "empty.root"
    events = read_events(good_file)
    tree = {k: v[:0] for k, v in events.items() if k not in schema.JAGGED}
    tree["stk"] = ak.zip({k[4:]: events[k][:0] for k in schema.JAGGED if k in events})
    with uproot.recreate(path) as f:
        f.mktree(schema.TREE_NAME, tree)
    _expect_error(path, "holds no events")


def test_nans_are_reported_per_event(tmp_path, good_file):
    events = read_events(good_file)
    bgo = events["bgo_energy"].copy()
    bgo[7, 3, 4] = np.nan
    sig = ak.to_list(events["stk_signal"])
    sig[11][0] = float("nan")
    bad = _rewrite(tmp_path, good_file, "nan.root", replace={"bgo_energy": bgo, "stk_signal": ak.Array(sig)})
    _expect_error(bad, "2 bad events, e.g. event_id 7: non-finite values in bgo_energy")
    reasons = bad_events(read_events(bad))
    assert list(np.flatnonzero(reasons != "")) == [7, 11]
    assert reasons[11] == "non-finite values in stk_signal"


def test_tree_missing(tmp_path):
    path = tmp_path / "other.root"
    with uproot.recreate(path) as f:
        f["something"] = "else"
    _expect_error(path, "no 'events' tree")


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch, good_file):
    events = read_events(good_file)

    def crash(*args, **kwargs):
        raise OSError("disk full")  # a failure after the file was opened for writing

    monkeypatch.setattr(uproot.WritableDirectory, "mktree", crash)
    with pytest.raises(OSError, match="disk full"):
        write_event_file(tmp_path / "x.root", events, {})
    assert list(tmp_path.iterdir()) == []
