"""Physics: a small BGO direction network beats the shower-axis fit on held-out events, and
as the seed of the standard track finding it recovers the PeV efficiency lost to saturation;
where the shower starts in the last layers, the axis fit is the better seed (the chain's rule).

The network is the catalog's `bgo-direction-mid`, small preset (convolutions + the line-fit
head, see dampeml.models.bgo_cnn), built by the same builder the training service uses. It
is trained here in-process with `model.fit` (batch 32, the preset's learning rate decaying
exponentially to a tenth over the epochs, as the service's reduce-on-plateau would) on the
events of datasets/bgo-direction-physics-small.yaml (p/He, 1 TeV - 1 PeV), simulated from
the spec's recipes. Why not Ray Train: on a 2-core machine MultiWorkerMirroredStrategy adds a
collective per step and Ray's processes compete with the two workers, which does not fit the
few minutes a test may take for the 10 epochs the physics needs (benchmarks/bench_training.py
measures the ratio); tests/test_training.py covers the Ray Train path for this family. The
same training through the service: `dampeml dataset build datasets/bgo-direction-physics-small.yaml
--out DIR` then `dampeml train bgo-direction-mid --dataset DIR`.

Judged on events it never saw (another simulation seed) against the energy-weighted shower-
axis fit (dampeml.features.shower_axis, the paper's standard method) run on the same events'
full-precision bar energies, while the network sees only the 8-bit image. Measure: the 68%
containment of the angle between predicted and true direction, in degrees. The untrained
network is printed too: it starts far off, so what beats the fit is learned, not built in.
"""

from __future__ import annotations

import pytest

from dampeml.features import fit_shower_axis
from tests.trained_bgo import (
    EPOCHS,
    HELD_OUT_PER_PARTICLE,
    HELD_OUT_SEED,
    NETWORK,
    angular_error_deg,
    containment68,
    network_input,
    spec_events,
)


@pytest.mark.timeout(480)
def test_bgo_network_beats_the_shower_axis_fit(trained_bgo_mid):
    model, info = trained_bgo_mid
    test_energy, test_truth = spec_events(seed=HELD_OUT_SEED, per_particle=HELD_OUT_PER_PARTICLE)
    x_test = network_input(test_energy)
    untrained = info["untrained"].predict(x_test, batch_size=1024, verbose=0)
    start = containment68(angular_error_deg(untrained, test_truth))
    cnn = containment68(angular_error_deg(model.predict(x_test, batch_size=1024, verbose=0), test_truth))
    axis_track, valid = fit_shower_axis(test_energy)
    axis = containment68(angular_error_deg(axis_track, test_truth))
    print(
        f"\n68% containment of the angular error, {len(test_truth)} held-out p/He events, 1 TeV - 1 PeV:"
        f"\n  CNN ({NETWORK}, small preset, {info['n_train']} training events, {EPOCHS} epochs): "
        f"{cnn:.3f} deg (untrained: {start:.1f} deg)"
        f"\n  shower-axis fit (full-precision energies, {valid.mean():.2%} fitted): {axis:.3f} deg"
        f"\n  margin: {axis - cnn:+.3f} deg ({(axis - cnn) / axis:+.1%} of the fit's)"
        f"\n  loss per epoch {info['loss']}; simulation {info['t_sim']:.0f} s, training {info['t_fit']:.0f} s"
    )
    assert start > 3 * axis  # untrained, the fixed line-fit geometry alone is far off
    assert cnn < axis


@pytest.mark.timeout(480)
def test_bgo_network_seed_recovers_the_pev_tracking_efficiency(trained_bgo_mid):
    """The paper's Table 3, option (a): the calorimeter CNN as the seed of the standard
    pattern recognition. At 0.56-1 PeV the saturated readout pulls the shower-axis fit off the
    track (helium's; from version 3 no longer protons': tests/test_simulation_physics.py), so the
    road around it often misses the primary; around the network's prediction the true track is
    found again. Measured with the ideal
    selection (the candidate nearest the truth), so only the seed differs: Table 2's
    efficiency in the 85% window, on held-out events, without interactions in the PSD."""
    import numpy as np

    from dampeml.detector.simulation import SimulationConfig, simulate
    from dampeml.evaluation.efficiency import efficiency_table, table2_masks
    from dampeml.features.tracks import truth_track
    from dampeml.reconstruction.hits import track_charge
    from dampeml.reconstruction.standard import find_candidates, select_ideal

    model, info = trained_bgo_mid
    lo, hi = 5.6234e5, 1e6
    eff = {}
    for particle in ("proton", "helium"):
        ev, _ = simulate(SimulationConfig(particle, 1000, lo, hi, seed=HELD_OUT_SEED + 1))
        truth = truth_track(ev)
        cnn = model.predict(network_input(ev["bgo_energy"]), batch_size=1024, verbose=0)
        charges = {}
        for name, seed in (("axis", None), ("cnn", cnn.astype(np.float64))):
            cands, _ = find_candidates(ev, seed=seed)
            charges[name] = track_charge(ev, select_ideal(cands, truth))
        counted, peak = table2_masks(ev["true_inelastic"], ev["true_interaction_z"])
        rows = efficiency_table(particle, ev["true_energy"], track_charge(ev, truth), charges,
                                energy_bins=[(lo, hi)], containments=(0.85,), mask=counted,
                                peak_mask=peak)  # fmt: skip
        eff[particle] = {r["method"]: 100 * r["efficiency"] for r in rows}
        print(f"\n{particle} 0.56-1 PeV, ideal selection, 85% window: seeded by the shower axis "
              f"{eff[particle]['axis']:.1f}%, by {NETWORK} {eff[particle]['cnn']:.1f}% "
              f"({eff[particle]['cnn'] - eff[particle]['axis']:+.1f} points; paper: standard "
              f"{'71.9' if particle == 'proton' else '51.3'}%, CNN chain ~96-97%)")  # fmt: skip
    assert eff["helium"]["cnn"] > eff["helium"]["axis"] + 20, "saturation spoils helium's axis most"
    # version 3's proton axis is no longer spoilt at PeV (the trigger drops the late showers whose
    # saturated cores misled it; the paper's ideal selection is at 71.9%, docs/simulation.md): the
    # network's seed cannot beat it there, only has to find the track in most events
    assert eff["proton"]["cnn"] > 85


@pytest.mark.timeout(480)
def test_late_showers_seed_the_tracker_with_the_axis_fit(trained_bgo_mid):
    """The chain's seed rule (ChainConfig.axis_seed_from_layer): a shower that starts in the last
    BGO layers leaves the layers above it at the MIP level, ~22 MeV per bar, which the 8-bit image
    (bar over hottest bar) rounds to 0. Most such images show at most one layer of one view, so
    the network cannot tell where the particle crossed that view and misses by more than the
    coarse Hough window, while the axis fit of the bar energies does not. Checked on held-out
    56-100 TeV protons (where those late showers cost the chain most): the cause (layers the
    image shows per view), and the effect of the rule on the seeds outside the coarse window."""
    import numpy as np

    from dampeml.detector.simulation import SimulationConfig, simulate
    from dampeml.features import COARSE, bgo_image, shower_start_layer
    from dampeml.features.tracks import truth_track
    from dampeml.reconstruction.chain import ChainConfig, choose_seed

    model, _ = trained_bgo_mid
    # every primary: the high-energy trigger records no late shower (version 3), the rule is for those
    ev, _ = simulate(SimulationConfig("proton", 3000, 5.623e4, 1e5, seed=HELD_OUT_SEED + 2, trigger=False))
    energy, truth = np.asarray(ev["bgo_energy"]), truth_track(ev)
    start = shower_start_layer(energy)
    from_layer = ChainConfig().axis_seed_from_layer
    late = (start >= from_layer) | (start < 0)
    shown = (bgo_image(energy) > 0).any(axis=2)  # (N, 14) layers the image shows anything in
    blind = np.minimum(shown[:, 0::2].sum(axis=1), shown[:, 1::2].sum(axis=1)) <= 1  # a view with <= 1 layer
    late_shower = late & (start >= 0)

    network = model.predict(network_input(energy), batch_size=1024, verbose=0).astype(np.float64)
    seed, axis_seeded = choose_seed(network, energy, from_layer)

    def outside(track: np.ndarray) -> np.ndarray:
        return ~(np.abs(track - truth).max(axis=1) <= COARSE.half_window_mm)

    print(
        f"\n56-100 TeV protons: {late.mean():.1%} start the shower at layer >= {from_layer} or show none; "
        f"the 8-bit image shows at most one layer of a view for {blind[late_shower].mean():.0%} of the late "
        f"showers, {blind[~late].mean():.1%} of the earlier ones"
        f"\n  seeds outside the coarse window (+-{COARSE.half_window_mm:g} mm): network "
        f"{outside(network).mean():.2%} (late showers {outside(network)[late].mean():.1%}), "
        f"with the rule {outside(seed).mean():.2%} "
        f"(axis fit on late showers {outside(seed)[late].mean():.1%})"
    )
    assert np.array_equal(axis_seeded, late & fit_shower_axis(energy)[1])
    assert np.array_equal(seed[~late], network[~late])
    assert blind[late_shower].mean() > 0.5 and blind[~late].mean() < 0.05
    assert outside(network)[late].mean() > 3 * outside(seed)[late].mean()
    assert outside(seed).mean() < outside(network).mean()
