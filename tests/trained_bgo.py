"""The small BGO direction network trained on MC once per test session, and the helpers it needs.

Used by tests/test_bgo_direction_physics.py (it must beat the shower-axis fit) and by
tests/test_alignment.py (its alignment head is trained on a flight-like run); the session
fixture `trained_bgo_mid` in conftest.py trains it once for both.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dampeml.datasets.spec import load_spec
from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.features import bgo_image, to_float
from dampeml.features.tracks import LEVER_ARM, truth_track

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "datasets" / "bgo-direction-physics-small.yaml"
NETWORK = "bgo-direction-mid"
EPOCHS = 10
LR_END_FRACTION = 0.1  # the learning rate decays from the preset's to this fraction of it
BATCH = 32
HELD_OUT_PER_PARTICLE = 3000
HELD_OUT_SEED = 9_505  # not the spec's seed: other events


def direction(track: np.ndarray) -> np.ndarray:
    """(N, 4) tracks -> (N, 3) unit direction vectors (z along the lever arm)."""
    t = np.asarray(track, dtype=np.float64)
    v = np.stack([t[:, 2] - t[:, 0], t[:, 3] - t[:, 1], np.full(len(t), LEVER_ARM)], axis=1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def angular_error_deg(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    cos = np.clip((direction(pred) * direction(true)).sum(axis=1), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


def containment68(err: np.ndarray) -> float:
    """68% quantile of the angular errors; events without a prediction (NaN) count as failures."""
    return float(np.quantile(np.where(np.isfinite(err), err, np.inf), 0.68))


def spec_events(seed: int | None = None, per_particle: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The spec's p/He recipes simulated: (N, 14, 22) MeV per bar and (N, 4) true tracks.

    Defaults: the spec's seed and event counts (the training sample); else other events of
    the same energy range and spectrum (the held-out sample).
    """
    source = load_spec(SPEC).sources[0]
    energies, tracks = [], []
    for i, (particle, recipe) in enumerate(sorted(source.particles.items())):
        cfg = SimulationConfig(
            particle,
            per_particle or recipe.events,
            recipe.energy_min,
            recipe.energy_max,
            recipe.spectrum_index,
            seed=(source.seed if seed is None else seed) * 10 + i,
        )
        branches, _ = simulate(cfg)
        energies.append(branches["bgo_energy"])
        tracks.append(truth_track(branches))
    return np.concatenate(energies), np.concatenate(tracks)


def network_input(bgo_energy: np.ndarray) -> np.ndarray:
    """What the network sees, as the dataset loader feeds it: the 8-bit image as float."""
    return to_float(bgo_image(bgo_energy))[..., None]


def train_bgo_mid():
    """The small `bgo-direction-mid` trained in-process on the spec's events: (model, info)."""
    import tensorflow as tf
    import tf_keras as keras

    from dampeml.models.catalog import build, get_network

    t0 = time.perf_counter()
    energy, truth = spec_events()
    x_train, y_train = network_input(energy), truth.astype(np.float32)
    t_sim = time.perf_counter() - t0
    tf.keras.utils.set_random_seed(0)
    model = build(NETWORK, preset="small")
    untrained = keras.models.clone_model(model)
    untrained.set_weights(model.get_weights())
    t1 = time.perf_counter()
    lr0 = get_network(NETWORK).small_config.learning_rate
    decay = keras.callbacks.LearningRateScheduler(
        lambda epoch: lr0 * LR_END_FRACTION ** (epoch / (EPOCHS - 1))
    )
    history = model.fit(
        x_train, y_train, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=0, callbacks=[decay]
    )
    info = {
        "untrained": untrained,
        "n_train": len(y_train),
        "loss": np.round(history.history["loss"], 1).tolist(),
        "t_sim": t_sim,
        "t_fit": time.perf_counter() - t1,
    }
    return model, info
