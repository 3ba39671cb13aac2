"""The clusters' widths in version-3 files and the charge's single-strip rule (DAMPE's analyses leave
clusters of one readout strip out of the STK charge).

The charge tests are hand-made tracks of known signals; the file tests simulate a few events of
each version and read them back through the platform's reader.
"""

from __future__ import annotations

from dataclasses import replace

import awkward as ak
import numpy as np
import pytest

from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.features.tracks import truth_track
from dampeml.io.root_reader import bad_events, inspect_file, read_events
from dampeml.io.root_writer import write_event_file
from dampeml.io.schema import readable_branches, required_branches
from dampeml.reconstruction.hits import stk_charge
from dampeml.reconstruction.standard import StandardConfig, reconstruct


def _straight_track_event(signals: list[float], widths: list[int]):
    """One vertical track at x = y = 10 mm with one cluster per layer: (layer, pos, signal, width, track)."""
    n = len(signals)
    layer = ak.Array([list(range(n))])
    pos = ak.Array([[10.0] * n])
    return layer, pos, ak.Array([signals]), ak.Array([widths]), np.array([[10.0, 10.0, 10.0, 10.0]])


def test_the_charge_leaves_single_strip_clusters_out_unless_the_track_has_no_other():
    # six proton-like wide clusters and six single-strip clusters reading 2.2 (within the abnormal cut)
    sig = [1.0, 2.2] * 6
    layer, pos, signal, width, track = _straight_track_event(sig, [2, 1] * 6)
    every, _ = stk_charge(layer, pos, signal, track)
    rule, hits = stk_charge(layer, pos, signal, track, width=width)
    print(f"charge of every cluster {every[0]:.3f}, without the single-strip ones {rule[0]:.3f}")
    assert hits.n_hits[0] == 12  # the rule changes the charge, not the hits
    assert rule[0] == pytest.approx(1.0)
    assert every[0] == pytest.approx(np.sqrt(1.6))
    # a track made only of single-strip clusters keeps them (no charge would be left otherwise)
    layer, pos, signal, width, track = _straight_track_event([1.0] * 12, [1] * 12)
    assert stk_charge(layer, pos, signal, track, width=width)[0][0] == pytest.approx(1.0)
    # width 0 (unknown) counts as a measured cluster
    layer, pos, signal, width, track = _straight_track_event(sig, [0] * 12)
    assert stk_charge(layer, pos, signal, track, width=width)[0][0] == pytest.approx(every[0])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    out = tmp_path_factory.mktemp("widths")
    paths = {}
    for version in (2, 3):
        cfg = SimulationConfig("proton", 60, 100.0, 200.0, seed=5, version=version)
        branches, meta = simulate(cfg)
        paths[version] = write_event_file(out / f"v{version}.root", branches, meta)
    return paths


def test_version_3_files_carry_the_widths_and_version_2_files_stay_valid(files):
    v3, v2 = inspect_file(files[3]), inspect_file(files[2])
    assert "stk_width" in v3.branches and "stk_width" not in v2.branches
    assert "stk_width" not in required_branches("mc")
    both = [set(v3.branches), set(v2.branches)]
    assert "stk_width" in readable_branches("flight", [set(v3.branches)])
    assert readable_branches("flight", both) == required_branches("flight")  # a mixed read: none
    ev = read_events(files[3])
    widths = ak.to_numpy(ak.flatten(ev["stk_width"]))
    assert ak.all(ak.num(ev["stk_width"]) == ak.num(ev["stk_pos"]))
    assert widths.min() >= 1 and widths.max() <= 40
    counts = np.bincount(widths)
    print(f"clusters by width: {dict(enumerate(counts.tolist()))}")
    assert counts[1] > 0 and counts[2:].sum() > counts[1]  # near-normal MIPs: mostly 2+ strips


def test_a_bad_width_is_named_when_the_file_is_read(files, tmp_path):
    ev = read_events(files[3])
    meta = inspect_file(files[3]).metadata
    ev["stk_width"] = ev["stk_width"] * 0  # every width 0: impossible for a cluster
    bad = write_event_file(tmp_path / "bad.root", ev, meta)
    reasons = bad_events(read_events(bad))
    assert set(reasons) == {"stk_width below 1"}


def test_the_standard_selection_and_the_truth_charge_use_the_rule_on_version_3_events(files):
    ev = read_events(files[3])
    truth = truth_track(ev)
    hits = (ev["stk_layer"], ev["stk_pos"], ev["stk_signal"])
    rule = stk_charge(*hits, truth, width=ev["stk_width"])[0]
    every = stk_charge(*hits, truth)[0]
    changed = np.isfinite(rule) & (np.abs(rule - every) > 1e-9)
    print(f"true-track charge changed by the rule in {changed.mean():.0%} of events")
    assert changed.any()
    with_w = reconstruct(ev).candidates
    without = reconstruct({k: v for k, v in ev.items() if k != "stk_width"}).candidates
    assert np.array_equal(with_w.track, without.track, equal_nan=True)  # the rule moves no hit
    assert not np.allclose(with_w.signal, without.signal, equal_nan=True)


def test_refusing_tracks_with_a_single_strip_cluster_counts_the_widths_of_their_own_hits(files):
    """The option of DAMPE's helium-analysis library (off by default): with every cluster two strips
    wide it refuses nothing, with every cluster one strip wide every track, on the real widths a part
    of them; files without widths (version 2) are not affected."""
    ev = read_events(files[3])
    rule = replace(StandardConfig(), refuse_single_strip=True)
    found = np.isfinite(reconstruct(ev).track[:, 0])

    def kept(events) -> np.ndarray:
        return np.isfinite(reconstruct(events, config=rule).track[:, 0])

    as_wide = {**ev, "stk_width": ev["stk_width"] * 0 + 2}
    as_single = {**ev, "stk_width": ev["stk_width"] * 0 + 1}
    real = kept(ev)
    print(f"tracks found {found.sum()}; refusing single-strip ones keeps {real.sum()} on the real widths")
    assert np.array_equal(kept(as_wide), np.isfinite(reconstruct(as_wide).track[:, 0]))
    assert not kept(as_single).any() and found.any()
    assert 0 < real.sum() < found.sum() and not (real & ~found).any()
    v2 = read_events(files[2])
    assert np.array_equal(kept(v2), np.isfinite(reconstruct(v2).track[:, 0]))
