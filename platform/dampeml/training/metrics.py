"""Test-split metrics of a trained network (pure numpy on predictions), and the primary metric
that promotion compares."""

from __future__ import annotations

import numpy as np

from dampeml import geometry as geo
from dampeml.datasets.loader import check_split, load_manifest, network_batch, stored_batches

#: The metric promotion compares, and whether higher is better, per task.
PRIMARY = {"regression": ("test_mae", False), "classification": ("test_auc", True)}


def predict_split(model, uri: str, net, split: str = "test", batch_size: int = 256):
    """(inputs, targets, predictions) of a split, in stored order."""

    manifest = load_manifest(uri)
    check_split(uri, manifest, split)
    xs, ys, ps = [], [], []
    for table in stored_batches(uri, split, rows=batch_size):
        batch = network_batch(table, manifest)
        x = {k: batch[k] for k in net.input_keys}
        pred = model.predict(x if len(x) > 1 else x[net.input_keys[0]], verbose=0)
        xs.append(x)
        ys.append(batch["y"])
        ps.append(np.asarray(pred))
    inputs = {k: np.concatenate([x[k] for x in xs]) for k in net.input_keys}
    return inputs, np.concatenate(ys).astype(np.float64), np.concatenate(ps).astype(np.float64)


def track_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (deg) between two tracks given as (x_top, y_top, x_bot, y_bot) at Z_TOP/Z_BOT."""
    dz = geo.Z_BOT - geo.Z_TOP

    def unit(t: np.ndarray) -> np.ndarray:
        v = np.stack([t[:, 2] - t[:, 0], t[:, 3] - t[:, 1], np.full(len(t), dz)], axis=1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    cos = np.clip(np.sum(unit(a) * unit(b), axis=1), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U), ties averaged."""
    y = y.astype(bool).ravel()
    score = score.ravel()
    n_pos, n_neg = y.sum(), (~y).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    _, inv, counts = np.unique(score, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def energy_resolution(log_ratio_error: np.ndarray) -> tuple[float, float]:
    """(bias, resolution) of E_reco / E_true from ln(E_reco / E_true): the median - 1 and half the
    16-84% width, robust to the tails of leaking showers."""
    ratio = np.exp(np.asarray(log_ratio_error, np.float64).ravel())
    q16, q50, q84 = np.percentile(ratio, [16, 50, 84])
    return float(q50 - 1.0), float((q84 - q16) / 2.0)


def metrics_from_predictions(task: str, y: np.ndarray, pred: np.ndarray, kind: str) -> dict[str, float]:
    """Test metrics: MSE/MAE (+ 68% angle and position containment for tracks, the energy bias and
    resolution for the energy network), or AUC/accuracy/BCE."""
    if task == "regression":
        err = pred - y
        out = {"test_mse": float(np.mean(err**2)), "test_mae": float(np.mean(np.abs(err)))}
        if kind == "bgo-direction":
            out["test_angle68_deg"] = float(np.percentile(track_angle_deg(pred, y), 68))
            out["test_pos68_mm"] = float(np.percentile(np.hypot(err[:, 0], err[:, 1]), 68))
        if kind == "bgo-energy":  # pred - y = ln(E_reco / E_true)
            out["test_energy_bias"], out["test_energy_resolution"] = energy_resolution(err)
        return out
    p = np.clip(pred.ravel(), 1e-7, 1 - 1e-7)
    t = y.ravel()
    return {
        "test_auc": roc_auc(t, p),
        "test_accuracy": float(np.mean((p > 0.5) == (t > 0.5))),
        "test_bce": float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))),
    }


def evaluate_test(model, uri: str, net) -> tuple[dict[str, float], dict, np.ndarray, np.ndarray]:
    """Metrics on the test split, with the inputs, targets and predictions they came from."""
    inputs, y, pred = predict_split(model, uri, net, "test")
    return (
        metrics_from_predictions(net.task, y, pred, net.dataset_kind),
        inputs,
        y,
        pred,
    )
