"""Straight tracks as every network and baseline reports them: (x_top, y_top, x_bot, y_bot).

A track is fixed, per projection, by its coordinate at the first and the last STK plane
(geometry.Z_TOP, Z_BOT), the paper's targets. A layer at height z sees the track at
(1 - f) * u_top + f * u_bot with f = (z - Z_TOP) / (Z_BOT - Z_TOP); the outer layers sit
half a plane gap outside the reference planes, so their f is slightly below 0 / above 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dampeml import geometry as geo

TRACK_COLUMNS = ("x_top", "y_top", "x_bot", "y_bot")
LEVER_ARM = geo.Z_BOT - geo.Z_TOP
#: f of each STK layer: where the layer lies between the top (0) and bottom (1) reference planes.
LAYER_FRACTION = (geo.STK_LAYER_Z - geo.Z_TOP) / LEVER_ARM
#: 0 for layers measuring x, 1 for y: the column offset into a track (x_top, y_top, ...).
LAYER_PROJECTION = np.where(geo.STK_LAYER_MEASURES_X, 0, 1)


def truth_track(events: Mapping) -> np.ndarray:
    """(N, 4) float64 true track from the MC branches true_x_top ... true_y_bot."""
    return np.stack([np.asarray(events[f"true_{c}"], dtype=np.float64) for c in TRACK_COLUMNS], axis=1)


def slopes(track: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dx/dz and dy/dz of (N, 4) tracks."""
    t = np.asarray(track, dtype=np.float64)
    return (t[:, 2] - t[:, 0]) / LEVER_ARM, (t[:, 3] - t[:, 1]) / LEVER_ARM


def cos_theta(track: np.ndarray) -> np.ndarray:
    """Cosine of the zenith angle of (N, 4) tracks: the path-length correction of hit signals."""
    tx, ty = slopes(track)
    return 1.0 / np.sqrt(1.0 + tx * tx + ty * ty)


def position_at(track: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) at depth `z` (mm) of the straight lines given by (N, 4) tracks at the STK planes."""
    t = np.asarray(track, dtype=np.float64)
    f = (z - geo.Z_TOP) / LEVER_ARM
    return t[:, 0] + f * (t[:, 2] - t[:, 0]), t[:, 1] + f * (t[:, 3] - t[:, 1])


def position_at_layer(track: np.ndarray, event: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Per hit: the coordinate its layer measures, where track `event` crosses layer `layer`."""
    t = np.asarray(track, dtype=np.float64)
    proj = LAYER_PROJECTION[layer]
    f = LAYER_FRACTION[layer]
    return (1.0 - f) * t[event, proj] + f * t[event, proj + 2]
