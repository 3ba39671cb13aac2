"""The standard track reconstruction (baseline) and the PSD charge-consistency cut, on simulated events.

Each test prints its numbers (run with `pytest -s`) so the margin to the limits is visible.
"""

from __future__ import annotations

from dataclasses import replace

import awkward as ak
import numpy as np
import pytest

from dampeml.features.tracks import truth_track
from dampeml.reconstruction.hits import track_charge
from dampeml.reconstruction.psd_charge import psd_charge, psd_consistency_cut
from dampeml.reconstruction.standard import (
    StandardConfig,
    find_candidates,
    passes_quality,
    reconstruct,
    select_ideal,
    select_standard,
)
from tests.conftest import dropping, simulated

#: The pattern recognition and the albedo apart from the axis' resolution: the 10 mm match of
#: the default criteria loses the events whose axis misses by more (test_the_match_cut_...).
WIDE_MATCH = replace(StandardConfig(), match_mm=30.0)


def _primary_only(ev: dict) -> dict:
    """The same events with every non-primary STK cluster removed: no backsplash, noise or secondaries."""
    keep = ev["stk_is_primary"]
    hits = ("stk_layer", "stk_pos", "stk_signal", "stk_is_primary", "stk_width")  # the widths: version 3 on
    return {**ev, **{k: ev[k][keep] for k in hits if k in ev}}


def _max_offset(track: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Largest |offset| of the four track coordinates (mm); inf where no track."""
    return np.nan_to_num(np.abs(track - truth).max(axis=1), nan=np.inf)


@pytest.fixture(scope="module")
def low() -> dict:
    return simulated("proton", 400, 100, 300, seed=31)


@pytest.fixture(scope="module")
def high() -> dict:
    return simulated("proton", 300, 2e5, 5e5, seed=32)


def test_clean_low_energy_tracks_are_found_precisely(low):
    ev = _primary_only(low)
    clean = ~np.asarray(low["true_inelastic"])
    truth = truth_track(low)
    d = _max_offset(reconstruct(ev, config=WIDE_MATCH).track, truth)[clean]
    found = np.isfinite(d).mean()
    med, p90 = np.median(d), np.percentile(d, 90)
    print(f"\nclean 100-300 GeV protons: found {found:.1%}, max offset median {med:.3f} mm, 90% {p90:.3f} mm")
    assert found > 0.97
    assert med < 0.05 and p90 < 0.15  # hit resolution 50 um over 12 layers


def _without_albedo(monkeypatch, particle: str, n: int, e_min: float, e_max: float, seed: int) -> dict:
    """The same events as `simulated` gives, their albedo hits drawn (the random stream unchanged) and
    dropped: what the tracker holds without backsplash, every other source kept."""
    from dampeml.detector import stk

    monkeypatch.setattr(stk, "backsplash", dropping(stk.backsplash))
    return simulated(particle, n, e_min, e_max, seed)


def test_backsplash_degrades_the_standard_selection_at_high_energy(low, high, monkeypatch):
    frac = {}
    for name, ev in (
        ("low, all hits", low),
        ("high, no albedo", _without_albedo(monkeypatch, "proton", 300, 2e5, 5e5, seed=32)),
        ("high, all hits", high),
    ):
        clean = ~np.asarray(ev["true_inelastic"])  # the primary crosses the whole STK
        d = _max_offset(reconstruct(ev, config=WIDE_MATCH).track, truth_track(ev))[clean]
        n_cl = ak.mean(ak.num(ev["stk_pos"]))
        frac[name] = np.mean(d < 0.3)
        print(f"\n{name}: {n_cl:.0f} clusters/event, standard track within 0.3 mm: {frac[name]:.1%}")
    # without albedo the high-energy track is nearly as easy as a low one. (Removing the non-primary
    # clusters instead, as the low-energy test does, no longer isolates the albedo from version 3 on: a
    # strip-level cluster that merged the primary's charge with albedo is kept or dropped whole, and its
    # position is off.) Version 3, seed 32: 97.3% of 187 clean events without albedo, 1.1% with it.
    assert frac["high, no albedo"] > 0.85, "without albedo the high-energy track should be easy"
    assert frac["high, all hits"] < frac["high, no albedo"] - 0.15
    assert frac["high, all hits"] < frac["low, all hits"] - 0.15


def test_ideal_selection_is_never_worse_than_standard(high):
    cands, _ = find_candidates(high)
    truth = truth_track(high)
    std, ideal = select_standard(cands, len(truth)), select_ideal(cands, truth)
    d_std = np.nan_to_num(((std - truth) ** 2).sum(1), nan=np.inf)
    d_ideal = np.nan_to_num(((ideal - truth) ** 2).sum(1), nan=np.inf)
    f_std, f_ideal = np.mean(_max_offset(std, truth) < 0.3), np.mean(_max_offset(ideal, truth) < 0.3)
    print(f"\n200-500 TeV protons, within 0.3 mm: ideal {f_ideal:.1%}, standard {f_std:.1%}")
    assert np.all(d_ideal <= d_std + 1e-9)
    assert f_ideal > f_std + 0.1, "at high energy the standard selection must lose tracks the pool holds"


def test_standard_selection_prefers_the_highest_signal_candidate(low):
    """Per event, the selected candidate is the quality candidate with the highest signal."""
    cands, _ = find_candidates(low)
    n = len(low["true_energy"])
    std = select_standard(cands, n)
    q = cands.quality & np.isfinite(cands.signal)
    # per event, the largest signal among quality candidates must be the selected one's
    best = np.full(n, -np.inf)
    np.maximum.at(best, cands.event[q], cands.signal[q])
    sel = np.isfinite(std[:, 0])
    picked = np.full(n, np.nan)
    match = (np.abs(cands.track - std[cands.event]).max(1) == 0) & q
    picked[cands.event[match]] = cands.signal[match]
    print(f"\nevents with a standard track: {sel.mean():.1%}, candidates per event {len(cands) / n:.1f}")
    assert sel.mean() > 0.7  # the paper's standard selection keeps ~77% of 0.1-1 TeV protons
    np.testing.assert_allclose(picked[sel], best[sel])
    assert np.all(~sel == ~np.isfinite(best))


def test_reconstruction_reads_no_truth():
    ev = simulated("proton", 100, 100, 1000, seed=33, mode="flight")
    assert not any(k.startswith("true_") for k in ev)
    res = reconstruct(ev, config=StandardConfig())
    print(f"\nflight-like run: standard track in {np.isfinite(res.track[:, 0]).mean():.0%} of events")
    assert res.track.shape == (100, 4) and np.isfinite(res.track[:, 0]).mean() > 0.6


def test_psd_charge_and_consistency_cut_reject_inelastic_events():
    rates = {}
    for particle, z, seed in (("proton", 1.0, 34), ("helium", 2.0, 35)):
        ev = simulated(particle, 1500, 100, 1000, seed=seed)
        truth = truth_track(ev)
        q_stk = track_charge(ev, truth)
        inel = np.asarray(ev["true_inelastic"])
        q_psd = psd_charge(ev["psd_energy"], truth)
        cut = psd_consistency_cut(ev["psd_energy"], truth, q_stk)
        med = np.nanmedian(q_psd[~inel])
        rates[particle] = (cut[~inel].mean(), cut[inel].mean())
        print(
            f"\n{particle}: PSD charge median {med:.2f} (Z = {z:g}); consistency cut keeps "
            f"{rates[particle][0]:.1%} of clean and {rates[particle][1]:.1%} of inelastic events"
        )
        assert abs(med - z) < 0.15 * z
        # of clean protons the cut kept 85% of every primary (version 2; version 3 untriggered: 86%) and
        # keeps 81% of those the trigger records, showers from the BGO top whose albedo reaches the PSD
        # (its two layers disagree in 18% of them instead of 13%)
        assert rates[particle][0] > 0.75
        assert rates[particle][1] < rates[particle][0] - 0.15


def test_flat_input_empty_events_and_bad_shapes(low):
    ev = {k: low[k] for k in ("bgo_energy", "psd_energy", "stk_layer", "stk_pos", "stk_signal")}
    counts = ak.to_numpy(ak.num(low["stk_pos"]))
    flat = {**ev, **{k: ak.to_numpy(ak.flatten(low[k])) for k in ("stk_layer", "stk_pos", "stk_signal")}}
    np.testing.assert_array_equal(reconstruct(ev).track, reconstruct(flat, counts=counts).track)
    empty = {**flat, "stk_layer": flat["stk_layer"][:0], "stk_pos": flat["stk_pos"][:0]}
    empty["stk_signal"] = flat["stk_signal"][:0]
    res = reconstruct(empty, counts=np.zeros_like(counts))
    assert np.isnan(res.track).all() and res.n_candidates.sum() == 0
    with pytest.raises(ValueError, match="bgo_energy must be"):
        reconstruct({**ev, "bgo_energy": np.asarray(ev["bgo_energy"])[:, :7]})
    with pytest.raises(ValueError, match="STK hit lists"):
        reconstruct({**ev, "bgo_energy": np.asarray(ev["bgo_energy"])[:-1]})
    no_psd = {k: v for k, v in ev.items() if k != "psd_energy"}
    with pytest.raises(ValueError, match="psd_energy .* require_psd_match=False"):
        reconstruct(no_psd)
    alone = reconstruct(no_psd, config=replace(StandardConfig(), require_psd_match=False))
    assert np.isfinite(alone.track[:, 0]).sum() >= np.isfinite(reconstruct(ev).track[:, 0]).sum()


def test_each_quality_criterion_rejects_what_it_names(low):
    """On one candidate pool, each criterion of StandardConfig, moved alone, removes exactly the
    candidates whose feature crosses it."""
    cands, _ = find_candidates(low)
    base = replace(
        StandardConfig(), match_mm=np.inf, match_angle_rad=np.inf, quality_max_chi2_ndf=np.inf,
        max_unpaired_planes=None, require_first_plane=False, require_psd_match=False,
    )  # fmt: skip
    loose = passes_quality(cands, base)
    cases = {
        "match_mm": (replace(base, match_mm=10.0), cands.match_mm <= 10.0),
        "match_angle_rad": (replace(base, match_angle_rad=0.05), cands.angle <= 0.05),
        "chi2": (replace(base, quality_max_chi2_ndf=3.0), cands.chi2_ndf <= 3.0),
        "unpaired": (replace(base, max_unpaired_planes=0), cands.unpaired == 0),
        "first plane": (replace(base, require_first_plane=True), cands.first_plane),
        "psd": (replace(base, require_psd_match=True), cands.psd_match),
        "single strip": (replace(base, refuse_single_strip=True), cands.single_strip == 0),
    }
    for name, (cfg, wanted) in cases.items():
        got = passes_quality(cands, cfg)
        print(f"{name}: keeps {got.sum()} of {loose.sum()} candidates")
        np.testing.assert_array_equal(got, loose & wanted, err_msg=name)
        assert 0 < got.sum() <= loose.sum()
    assert cases["match_mm"][0].match_mm < StandardConfig().match_mm + 1  # the default is the 10 mm
    assert (cands.angle >= 0).all() and (cands.unpaired <= 6).all()


def test_the_match_cut_loses_the_events_whose_axis_misses_the_track(low):
    """With clean primary hits only, the 10 mm / 0.15 rad match is what the standard selection
    loses: the share of events found equals the share whose shower axis lies within both cuts of
    the true track (the DAMPE helium analysis' match; its efficiency is the paper's ~75-80%)."""
    from dampeml.features.shower_axis import fit_shower_axis
    from dampeml.reconstruction.standard import angle_between, distance_at_bgo_top

    ev = _primary_only(low)
    clean = ~np.asarray(low["true_inelastic"])
    truth = truth_track(low)
    cfg = StandardConfig()
    found = np.isfinite(reconstruct(ev).track[:, 0])[clean]
    axis, _ = fit_shower_axis(low["bgo_energy"])
    within = (distance_at_bgo_top(axis, truth) <= cfg.match_mm) & (
        angle_between(axis, truth) <= cfg.match_angle_rad
    )
    print(f"\nclean 100-300 GeV protons: found {found.mean():.1%}, axis within the match cuts "
          f"{within[clean].mean():.1%} (margin 0.05)")  # fmt: skip
    assert 0.5 < found.mean() < 0.95
    assert abs(found.mean() - within[clean].mean()) < 0.05


def test_a_standard_settings_file_changes_only_what_it_names_and_refuses_unknown_fields(tmp_path):
    from dampeml.reconstruction.config import ChainConfigError, read_standard_config, standard_config_yaml

    good = tmp_path / "std.yaml"
    good.write_text("match_mm: 30\nrequire_psd_match: false\n")
    cfg = read_standard_config(good)
    assert cfg == replace(StandardConfig(), match_mm=30.0, require_psd_match=False)
    again = tmp_path / "resolved.yaml"
    again.write_text(standard_config_yaml(cfg))
    assert read_standard_config(again) == cfg  # what a report writes reads back the same
    bad = tmp_path / "bad.yaml"
    bad.write_text("match_mmm: 30\n")
    with pytest.raises(ChainConfigError, match="bad.yaml.*match_mmm"):
        read_standard_config(bad)
