"""The flux's comparisons and its network energy on hand-made samples: scores of known separation give
their known AUC and proton rejection, energy estimates of known smearing their known resolution, and a
flux measured with the samples' own energy uses it (or refuses a mix of estimates)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from dampeml.physics.compare import McEvents, compare, write_comparison
from dampeml.physics.flux import FluxError
from dampeml.physics.measure import EventSample, Generation, measure_flux
from dampeml.physics.networks import RegisteredNetworks
from dampeml.physics.samples import check_choice, sample_from_reprocessed
from dampeml.training.metrics import energy_resolution, metrics_from_predictions

BINS = np.array([50.0, 100.0, 200.0])
#: the hand-made separation: electron scores N(SEPARATION, 1), proton scores N(0, 1)
SEPARATION = 2.0


def _vertical(n: int, x_mm: float = 0.0) -> np.ndarray:
    """(n, 4) vertical axes at x (fiducial at 0)."""
    return np.tile([x_mm, 0.0, x_mm, 0.0], (n, 1))


def _events(n: int, electron: bool, rng, smear: float = 0.03, axis_x: float = 0.0) -> McEvents:
    truth = np.exp(rng.uniform(np.log(30.0), np.log(300.0), n))
    deposit = truth * 1e3 * 0.92 * (1 + smear * rng.normal(size=n))  # MeV: 92% contained, 3% smearing
    score = rng.normal(SEPARATION if electron else 0.0, 1.0, n)
    return McEvents(_vertical(n, axis_x), deposit, truth, {"known": score, "zeta-like": -score},
                    truth * (1 + 0.01 * rng.normal(size=n)))  # fmt: skip


def test_scores_and_energies_of_known_separation_and_smearing():
    rng = np.random.default_rng(3)
    electrons, protons = _events(40000, True, rng), _events(40000, False, rng)
    result = compare(electrons, protons, BINS)
    auc = norm.cdf(SEPARATION / np.sqrt(2))  # P(electron score > proton score)
    survival = norm.sf(SEPARATION - norm.ppf(0.9))  # protons above the cut that keeps 90% of electrons
    for row in result.scores:
        if row.score != "known":
            assert row.auc == pytest.approx(1 - auc, abs=0.01)  # the reversed score ranks them backwards
            continue
        share = row.protons_above / row.n_protons
        print(f"{row.e_low:g}-{row.e_high:g} GeV: AUC {row.auc:.4f} (expected {auc:.4f}), proton survival "
              f"{share:.4f} (expected {survival:.4f}), rejection {row.rejection_text}")  # fmt: skip
        assert row.auc == pytest.approx(auc, abs=0.01)
        assert share == pytest.approx(survival, abs=0.02)
        assert row.rejection == pytest.approx(1 / share)
    for row in result.energies:
        print(f"{row.e_low:g}-{row.e_high:g} GeV {row.containment} {row.estimate}: bias {row.bias:+.4f}, "
              f"resolution {row.resolution:.4f}")  # fmt: skip
        expected = 0.03 if row.estimate == "standard" else 0.01
        assert row.resolution == pytest.approx(expected, rel=0.1) and abs(row.bias) < 0.004
    assert {r.containment for r in result.energies} == {"fiducial"}


def test_the_comparison_report_and_a_bin_without_electrons(tmp_path):
    rng = np.random.default_rng(4)
    electrons, protons = _events(3000, True, rng), _events(3000, False, rng)
    result = compare(electrons, protons, BINS)
    path = write_comparison(result, tmp_path, {"what": "hand-made"})
    text = path.read_text()
    assert text.count("| known |") == 2 and "non-fiducial" not in text
    assert (tmp_path / "roc.png").stat().st_size > 5000 and (tmp_path / "energy.png").stat().st_size > 5000
    with pytest.raises(FluxError, match="bin 1000-2000 GeV: 0 electron MC events"):
        compare(electrons, protons, np.array([1000.0, 2000.0]))


def test_a_rejection_without_surviving_protons_is_a_lower_bound():
    rng = np.random.default_rng(5)
    electrons, protons = _events(2000, True, rng), _events(500, False, rng)
    protons.scores["known"] -= 100.0  # no proton anywhere near the electrons
    row = next(r for r in compare(electrons, protons, BINS).scores if r.score == "known")
    assert row.protons_above == 0 and row.rejection_text == f"> {row.n_protons}"


def test_the_flux_uses_the_samples_own_energy_and_refuses_a_mix():
    """Each electron's own energy estimate is its true energy: every MC electron lands in its true bin,
    whatever its deposit says (the deposits are scrambled here)."""
    rng = np.random.default_rng(6)
    n = 20000
    truth = np.exp(rng.uniform(np.log(30.0), np.log(300.0), n))
    scrambled = rng.permutation(truth) * 1e3

    def sample(own: bool) -> EventSample:
        return EventSample(_vertical(n), scrambled, rng.normal(2, 1, n), truth, truth if own else None)

    m = measure_flux(sample(True), sample(True), sample(True), [Generation(2 * n, 30, 300, 1.0)], 1e4, BINS)
    np.testing.assert_array_equal(m.electron_energy_gev, truth)
    assert m.own_energy
    for b, lo, hi in zip(m.bins, BINS[:-1], BINS[1:], strict=True):
        assert len(b.electrons) == ((truth >= lo) & (truth < hi)).sum()
    with pytest.raises(FluxError, match="only flight carry the network energy"):
        measure_flux(sample(True), sample(False), sample(False), [Generation(2 * n, 30, 300, 1.0)], 1e4, BINS)


def test_energy_metrics_and_bad_choices():
    y = np.log(np.full((1000, 1), 1.1))  # ln(E_true / deposit)
    pred = y + np.log(1.02) + 0.01 * np.random.default_rng(7).normal(size=y.shape)
    metrics = metrics_from_predictions("regression", y, pred, "bgo-energy")
    assert metrics["test_energy_bias"] == pytest.approx(0.02, abs=0.002)
    assert metrics["test_energy_resolution"] == pytest.approx(0.0102, rel=0.1)
    assert energy_resolution(np.zeros(10)) == (0.0, 0.0)
    with pytest.raises(FluxError, match="unknown score 'hamf'.*electron-proton-dnn"):
        check_choice("hamf", "standard")
    with pytest.raises(FluxError, match="unknown energy estimate 'cnn'.*bgo-energy"):
        check_choice("zeta", "cnn")
    with pytest.raises(FluxError, match="computed from event files"):
        sample_from_reprocessed("/nowhere", "combined")
    with pytest.raises(FluxError, match="is not an electron/proton classifier"):
        RegisteredNetworks().score("bgo-energy", np.zeros((1, 14, 22)))
