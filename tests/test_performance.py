"""Figures of merit of the physics report (dampeml.evaluation.performance) on inputs with known answers."""

from __future__ import annotations

import numpy as np

from dampeml.evaluation.performance import (
    auc,
    containment_by_bin,
    direction_errors,
    efficiency_at,
    roc_curve,
)
from dampeml.features.tracks import LEVER_ARM


def test_direction_errors_of_a_known_tilt_and_shift():
    truth = np.zeros((3, 4))
    track = truth.copy()
    track[:, 2] = LEVER_ARM * np.tan(np.radians([0.0, 1.0, 5.0]))  # x_bot: tilt in x only
    track[:, 1] = 2.0  # y_top shifted by 2 mm: adds its own small tilt in y
    angle, pos = direction_errors(track, truth)
    expected = np.degrees(np.arctan(np.hypot(np.tan(np.radians([0.0, 1.0, 5.0])), 2.0 / LEVER_ARM)))
    np.testing.assert_allclose(angle, expected, rtol=1e-9)
    np.testing.assert_allclose(pos, 2.0)


def test_containment_by_bin_is_the_quantile_of_each_bin():
    rng = np.random.default_rng(3)
    energy = np.r_[np.full(1000, 50.0), np.full(1000, 5e4)]
    values = np.r_[rng.exponential(1.0, 1000), rng.exponential(0.1, 1000)]
    c68, n = containment_by_bin(values, energy)
    assert n.tolist() == [1000, 0, 0, 1000, 0]
    assert abs(c68[0] - np.quantile(values[:1000], 0.68)) < 1e-12
    assert abs(c68[3] / c68[0] - 0.1) < 0.02 and np.isnan(c68[1])


def test_roc_and_auc_of_perfect_random_and_inverted_scores():
    rng = np.random.default_rng(4)
    y = rng.random(4000) < 0.3
    assert auc(y, y.astype(float)) == 1.0 and auc(y, -y.astype(float)) == 0.0
    assert abs(auc(y, rng.random(4000)) - 0.5) < 0.03
    fpr, tpr = roc_curve(y, y + 0.1 * rng.random(4000))
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert tpr[np.searchsorted(fpr, 1e-9)] == 1.0  # all positives before any negative


def test_efficiency_at_a_working_point():
    y = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    score = np.r_[np.linspace(0.5, 1.0, 100), np.linspace(0.0, 0.6, 100)]
    threshold, background = efficiency_at(y, score, 0.9)
    assert 0.5 < threshold < 0.6
    assert 0.0 < background < 0.2
    assert np.isnan(auc(np.ones(5, bool), np.arange(5.0)))
