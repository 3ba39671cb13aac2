"""Resolution and classification figures of merit, pure numpy: what the physics report tabulates.

- direction: 68% / 95% containment of the angular and position error in bins of deposited
  energy (paper, section 4: Figures 6-7);
- classifiers: ROC curves and their area (inelastic classifier vs the PSD cut, e/p).
"""

from __future__ import annotations

import numpy as np

from dampeml.training.metrics import roc_auc, track_angle_deg

#: Deposited-energy bin edges (GeV) of the report's resolution plots: decades, 10 GeV - 1 PeV.
DEPOSIT_EDGES_GEV = np.array([1e1, 1e2, 1e3, 1e4, 1e5, 1e6])


def containment(values: np.ndarray, fraction: float) -> float:
    """The `fraction` quantile of finite values (NaN if there are none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.quantile(v, fraction)) if len(v) else float("nan")


def direction_errors(track: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per event: angle (deg) and distance (mm) at the first STK plane between track and truth."""
    track = np.asarray(track, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    angle = track_angle_deg(track, truth)
    position = np.hypot(track[:, 0] - truth[:, 0], track[:, 1] - truth[:, 1])
    return angle, position


def containment_by_bin(
    values: np.ndarray, energy: np.ndarray, edges: np.ndarray = DEPOSIT_EDGES_GEV, fraction: float = 0.68
) -> tuple[np.ndarray, np.ndarray]:
    """(per bin `fraction` containment, per bin count of finite values) in bins of `energy`."""
    values = np.asarray(values, dtype=np.float64)
    idx = np.digitize(energy, edges) - 1
    out = np.full(len(edges) - 1, np.nan)
    counts = np.zeros(len(edges) - 1, dtype=np.int64)
    for b in range(len(edges) - 1):  # a handful of bins, not events
        v = values[(idx == b) & np.isfinite(values)]
        counts[b] = len(v)
        if len(v):
            out[b] = np.quantile(v, fraction)
    return out, counts


def roc_curve(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) over all thresholds, higher score = positive.

    Events with a non-finite score count as never selected (they reach TPR/FPR only at the end).
    """
    y = np.asarray(y, dtype=bool).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    s = np.where(np.isfinite(s), s, -np.inf)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # one point per distinct threshold
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC area from ranks (ties averaged); non-finite scores rank lowest."""
    s = np.asarray(score, dtype=np.float64).ravel()
    return roc_auc(np.asarray(y), np.where(np.isfinite(s), s, -np.inf))


def efficiency_at(y: np.ndarray, score: np.ndarray, keep_fraction_of_positives: float) -> tuple[float, float]:
    """(threshold, background acceptance) at which `keep_fraction_of_positives` of positives pass."""
    y = np.asarray(y, dtype=bool).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    pos = s[y & np.isfinite(s)]
    if not len(pos) or not (~y).any():
        return float("nan"), float("nan")
    threshold = float(np.quantile(pos, 1.0 - keep_fraction_of_positives))
    return threshold, float(np.mean(s[~y] >= threshold))
