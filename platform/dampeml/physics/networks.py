"""The flux's networks, run on the events of event files: the electron/proton classifiers' scores and
the energy network's energy, each loaded once from the registry (by alias) with the safe loader.

Scores (higher: more electron-like):
- a classifier (`electron-proton` HAMF, `electron-proton-cnn`, `electron-proton-dnn`): its logit,
  ln(p / (1 - p)), computed from the last layer's pre-activation rather than from p, which a float32
  sigmoid rounds to exactly 1 for most electrons above a few hundred GeV (a cut among ties cannot
  keep a chosen share of them);
- `combined`: the mean of HAMF's and the DNN's logits, seed 001's estimator combining both scores.

Energy: `bgo-energy` predicts ln(true energy / deposit); the energy is deposit x exp(prediction).
"""

from __future__ import annotations

import numpy as np

from dampeml.models.common import tf_keras
from dampeml.physics.flux import FluxError
from dampeml.reconstruction.chain import bgo_input, shower_input

CLASSIFIERS = ("electron-proton", "electron-proton-cnn", "electron-proton-dnn")
COMBINED = "combined"
#: the networks whose logits `combined` averages
COMBINED_OF = ("electron-proton", "electron-proton-dnn")
ENERGY_NETWORK = "bgo-energy"
#: energy estimates: the standard (deposit with the MC electrons' correction) or the network's
ENERGIES = ("standard", ENERGY_NETWORK)
#: rows per network call
CHUNK = 4096
TRAIN_HINT = "train them with `dampeml pipeline run recipes/electron-flux.yaml`"


class RegisteredNetworks:
    """The flux's networks of one alias, loaded on first use."""

    def __init__(self, alias: str = "production"):
        self.alias = alias
        self._heads: dict[str, tuple] = {}

    def _head(self, name: str) -> tuple:
        """(features model, last kernel, bias, input names): the pre-activation is features @ W + b."""
        if name not in self._heads:
            from dampeml.registry.models import RegistryError, load_model

            try:
                model = load_model(f"models:/{name}@{self.alias}")
            except RegistryError as exc:
                known = ", ".join((*CLASSIFIERS, ENERGY_NETWORK))
                raise FluxError(f"{exc}; the flux's networks are {known}: {TRAIN_HINT}") from None
            last = model.layers[-1]
            kernel, bias = last.get_weights()
            features = tf_keras().Model(model.inputs, last.input)
            self._heads[name] = (features, kernel, bias, list(model.input_names))
        return self._heads[name]

    def linear_output(self, name: str, bgo_energy: np.ndarray) -> np.ndarray:
        """(N,) the network's output before its activation (a classifier's logit, the regression itself)."""
        features, kernel, bias, input_names = self._head(name)
        energy = np.asarray(bgo_energy, dtype=np.float32)
        out = np.empty(len(energy), dtype=np.float64)
        for start in range(0, len(energy), CHUNK):
            part = energy[start : start + CHUNK]
            both = {"x_image": bgo_input(part), "x_vars": shower_input(part)}
            x = [both[n] for n in input_names]
            h = np.asarray(features(x if len(x) > 1 else x[0], training=False), dtype=np.float64)
            out[start : start + len(part)] = (h @ kernel.astype(np.float64) + bias)[:, 0]
        return out

    def score(self, name: str, bgo_energy: np.ndarray) -> np.ndarray:
        """(N,) the electron score `name` (module docstring)."""
        if name == COMBINED:
            return np.mean([self.linear_output(n, bgo_energy) for n in COMBINED_OF], axis=0)
        if name not in CLASSIFIERS:
            raise FluxError(
                f"{name!r} is not an electron/proton classifier: use one of {[*CLASSIFIERS, COMBINED]}"
            )
        return self.linear_output(name, bgo_energy)

    def energy_gev(self, bgo_energy: np.ndarray) -> np.ndarray:
        """(N,) the energy network's estimate (GeV)."""
        deposit_gev = np.asarray(bgo_energy, dtype=np.float64).sum(axis=(1, 2)) / 1e3
        return deposit_gev * np.exp(self.linear_output(ENERGY_NETWORK, bgo_energy))
