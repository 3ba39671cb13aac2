"""The CNN reconstruction chain (paper sections 4-7; docs/reconstruction.md), vectorized over batches.

Per batch of events, each stage runs once over all the events it applies to:

1. BGO image -> BGO direction network, the energy-range model chosen per event by the
   deposited energy (low < 300 GeV <= mid < 20 TeV <= high); with `flight=True` the
   `bgo-direction-<range>-aligned` models (alignment head) where registered. The seed of
   the tracker networks is this track, or the shower-axis fit for a shower that starts in
   the last BGO layers (`ChainConfig.axis_seed_from_layer`).
2. Coarse Hough network (400 um, +-80 mm) around the seed, below ~1 TeV deposited.
3. Precise Hough network (50 um, +-10 mm) around the current track, twice (the second pass
   around the first's track; `ChainConfig.precise_passes`), then refitted to the STK hits near
   it, hits off the line through the others left out (`ChainConfig.refit_window_mm`,
   `refit_outlier_mm`, reconstruction.hits.refit_track): the final track.
4. Hit assignment (0.3 mm, one hit per layer) and the STK charge (reconstruction.hits).
5. Inelastic classifier: P(no inelastic) = raw-STK network x Hough network (400 um image
   around the final track, as the inelastic-hough datasets are built).
6. Electron/proton network (HAMF) on the BGO image and the shower variables.

Network inputs are made by the same feature functions, with the same arguments, as the
training input pipeline (datasets.loader / datasets.columns): bgo_image + to_float, the
shower variables as float32, render_stk_image, select_roi_hits around the float64 centre +
render_hough with cos_theta of the float32 stored centre. tests/test_chain.py checks them
bit for bit against the loader.

Decisions of ours (the paper is silent):
- An event with no STK hit inside a Hough RoI keeps its track from the previous stage: the
  Hough regression datasets require RoI hits (`require_hough_hits`), so the networks never
  saw an empty image, and an empty image has no track to find.
- Events are never read for truth: `run` drops every MC-only branch (`true_*`, `stk_is_primary`,
  io.schema.MC_ONLY) before anything else, so MC and flight files go through identical code.
- `versions` is keyed by the registered model actually used, so a flight chain names
  `bgo-direction-low-aligned` where it used the alignment model, `bgo-direction-low` otherwise.
- Outputs of an event with no assigned hit: stk_charge NaN, n_track_hits 0; every other
  column is finite for any event with a finite BGO image.
- A shower that starts in the last BGO layers (or none at all) seeds the tracker networks with
  the shower-axis fit instead of the BGO network (`axis_seed` = 1). Above the shower, each
  layer holds a MIP track of ~22 MeV per bar, which rounds to 0 in the paper's 8-bit image
  (bar over hottest bar) once the hottest bar exceeds ~11 GeV. Three in four such images show
  at most one layer of one view, which says nothing of where the particle crossed that view:
  the network misses by 80-340 mm, outside the coarse window; the axis fit, which reads the
  bar energies themselves, does not (benchmarks/README.md, "The seed of late showers").
- The precise network runs twice, the second time centred on its own first answer. Trained
  around the coarse network's tracks, it is most accurate near the image centre; among the
  hundreds of clusters of a PeV event, its first answer often lands within a few mm but not
  within the 0.3 mm hit window (benchmarks/README.md, "Two precise passes").
- The network's track is then refitted: a straight line per projection through the hit
  nearest to it within 2 mm in each layer (at least 3 per projection, else unchanged). The
  paper assigns hits to the network's track as it is; at PeV ours is often within 2 mm of
  the primary but not within 0.3 mm (benchmarks/README.md, "The track refit").
  `tracker_track` (Table 3, option b) stays the networks alone.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from dampeml.errors import InputError
from dampeml.features import (
    HoughGeometry,
    RoiHits,
    bgo_image,
    fit_shower_axis,
    render_hough,
    render_stk_image,
    select_roi_hits,
    shower_start_layer,
    shower_variables,
    to_float,
)
from dampeml.features.hough import apply_offsets, max_pool
from dampeml.features.jagged import flatten, gather_index
from dampeml.features.shower_variables import SHOWER_VARIABLE_NAMES
from dampeml.features.tracks import cos_theta, slopes
from dampeml.io.schema import MC_ONLY
from dampeml.models.catalog import ALIGNED_SUFFIX
from dampeml.models.hough_cnn import pooled_input_twin
from dampeml.reconstruction.config import ChainConfig
from dampeml.reconstruction.hits import refit_track, stk_charge
from dampeml.reconstruction.onnx_export import export, session
from dampeml.registry.models import RegistryError, load_model, version_of

ENERGY_RANGES = ("low", "mid", "high")
RUNTIMES = ("tensorflow", "onnx")
TRACK_COLUMNS = ("track_x_top", "track_y_top", "track_x_bot", "track_y_bot")
BGO_COLUMNS = ("bgo_x_top", "bgo_y_top", "bgo_x_bot", "bgo_y_bot")
#: the standard shower-axis fit (the physics stage's containment classes are defined on it)
AXIS_COLUMNS = ("axis_x_top", "axis_y_top", "axis_x_bot", "axis_y_bot")
OUTPUT_COLUMNS = (
    *TRACK_COLUMNS,
    *BGO_COLUMNS,
    "theta",
    "phi",
    "stk_charge",
    "n_track_hits",
    "inelastic_score",
    "electron_score",
    "bgo_model",
    "axis_seed",
    *AXIS_COLUMNS,
    "bgo_energy_mev",
    "zeta",
)
ZETA = SHOWER_VARIABLE_NAMES.index("zeta")
STK_BRANCHES = ("stk_layer", "stk_half", "stk_channel", "stk_pos", "stk_signal")


@dataclass
class ChainModels:
    """The networks of the chain: tf-keras models or onnxruntime sessions (see :class:`Runner`).

    A partial chain (the front stages a model-seeded dataset needs, :data:`UPSTREAM_FIELDS`)
    leaves the networks it never runs as None.
    """

    bgo_low: Any
    bgo_mid: Any
    bgo_high: Any
    hough_coarse: Any = None
    hough_precise: Any = None
    inelastic_raw_stk: Any = None
    inelastic_hough: Any = None
    electron_proton: Any = None

    def bgo(self, energy_range: str) -> Any:
        return getattr(self, f"bgo_{energy_range}")


#: ChainModels field -> catalog network name (the registered model name).
NETWORK_OF_FIELD = {
    "bgo_low": "bgo-direction-low",
    "bgo_mid": "bgo-direction-mid",
    "bgo_high": "bgo-direction-high",
    "hough_coarse": "stk-hough-coarse",
    "hough_precise": "stk-hough-precise",
    "inelastic_raw_stk": "inelastic-raw-stk",
    "inelastic_hough": "inelastic-hough",
    "electron_proton": "electron-proton",
}

#: The chain's tracks a Hough dataset can be seeded with -> the networks that make it:
#: "seed" (BGO networks by energy range, then the seed rule: the coarse network's input),
#: "coarse" (after the coarse step: the precise network's input), "final" (the chain's track).
UPSTREAM_FIELDS: dict[str, tuple[str, ...]] = {
    "seed": ("bgo_low", "bgo_mid", "bgo_high"),
    "coarse": ("bgo_low", "bgo_mid", "bgo_high", "hough_coarse"),
    "final": ("bgo_low", "bgo_mid", "bgo_high", "hough_coarse", "hough_precise"),
}
#: The ChainConfig fields that decide the track after each of those stages: with the models'
#: versions, what a model-seeded dataset's RoIs depend on (part of its version).
_SEED_SETTINGS = ("low_mid_switch_mev", "mid_high_switch_mev", "axis_seed_from_layer")
_COARSE_SETTINGS = (*_SEED_SETTINGS, "coarse_below_mev", "coarse", "zthr")
UPSTREAM_SETTINGS: dict[str, tuple[str, ...]] = {
    "seed": _SEED_SETTINGS,
    "coarse": _COARSE_SETTINGS,
    "final": (*_COARSE_SETTINGS, "precise", "precise_passes", "refit_window_mm", "refit_outlier_mm"),
}


class Runner:
    """One network behind one call: inputs by name -> (N, k) float32 outputs, in chunks.

    A tf-keras model runs through one tf.function traced once with a free batch dimension
    (Keras' own predict function retraces for every new batch size, i.e. per energy range
    and last chunk); an onnxruntime session runs as it is. With `input_pool` > 1 the model is
    the twin of models.hough_cnn.pooled_input_twin and each chunk of 8-bit images is max-pooled
    here (features.hough.max_pool) on its way in.

    Every call is exactly `chunk` rows (the last padded with zeros): TensorFlow's and
    onnxruntime's kernels pick their algorithms by batch size, so the same event run in calls of
    other sizes came out a few units in the last place apart. With one shape, an event's outputs
    do not depend on which events share its call, and a resumed reprocessing job writes what an
    uninterrupted one writes, bit for bit.
    """

    def __init__(self, model: Any, chunk: int, input_pool: int = 1) -> None:
        self.chunk = max(1, int(chunk))
        self.model = model
        self.input_pool = int(input_pool)
        self.n_events = 0  # events this network has run on (FLOPs per event in the benchmark)
        if hasattr(model, "predict_on_batch"):
            import tensorflow as tf

            self.input_names = tuple(model.input_names)
            specs = [
                tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=n)
                for t, n in zip(model.inputs, model.input_names, strict=True)
            ]
            single = len(specs) == 1

            @tf.function(input_signature=specs, autograph=False)
            def forward(*x):
                return model(x[0] if single else list(x), training=False)

            self._forward = forward
            self._call = self._keras
        elif hasattr(model, "get_inputs") and hasattr(model, "run"):
            self.input_names = tuple(i.name for i in model.get_inputs())
            self._call = self._onnx
        else:
            raise TypeError(f"not a tf-keras model or onnxruntime session: {type(model).__name__}")

    def _keras(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._forward(*(inputs[k] for k in self.input_names)).numpy()

    def _onnx(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.model.run(None, inputs)[0]

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise ValueError(f"network inputs {sorted(missing)} not given (has {sorted(inputs)})")
        n = len(inputs[self.input_names[0]])
        self.n_events += n
        pool = self.input_pool

        def piece(k: str, s: int) -> np.ndarray:
            x = inputs[k][s : s + self.chunk]
            if len(x) < self.chunk:
                x = np.concatenate([x, np.zeros((self.chunk - len(x), *x.shape[1:]), x.dtype)])
            return max_pool(x, pool) if pool > 1 else np.ascontiguousarray(x)

        out = [
            self._call({k: piece(k, s) for k in self.input_names})[: min(self.chunk, n - s)]
            for s in range(0, n, self.chunk)
        ]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 1), np.float32)


# --------------------------------------------------------------------------- registry


def chosen_models(
    alias: str, flight: bool, only: tuple[str, ...] | None = None
) -> dict[str, tuple[str, str]]:
    """ChainModels field -> (registered name, version) behind `alias`, every one checked first
    (`only`: these fields, for a partial chain).

    On flight data a BGO range uses `<name>-aligned@alias` where it is registered, the base
    model otherwise. A missing model or alias raises RegistryError saying what to do.
    """

    chosen: dict[str, tuple[str, str]] = {}
    for fname, name in NETWORK_OF_FIELD.items():
        if only is not None and fname not in only:
            continue
        if flight and fname.startswith("bgo_"):
            try:
                chosen[fname] = (name + ALIGNED_SUFFIX, version_of(name + ALIGNED_SUFFIX, alias))
                continue
            except RegistryError:
                pass
        chosen[fname] = (name, version_of(name, alias))
    return chosen


# --------------------------------------------------------------------------- the chain


def _finite_rows(a: np.ndarray) -> np.ndarray:
    return np.isfinite(a).all(axis=1)


class Chain:
    """The reconstruction chain over batches of events: `Chain.from_registry(...).run(events)`."""

    def __init__(
        self,
        models: ChainModels,
        versions: Mapping[str, str],
        flight: bool = False,
        config: ChainConfig | None = None,
        runtime: str = "tensorflow",
        onnx_threads: int = 0,
    ) -> None:
        """`models` as given; with runtime="onnx", tf-keras models among them are exported to ONNX
        (parity-checked against TensorFlow, onnx_export) and run in onnxruntime sessions
        (`onnx_threads` > 0 fixes their threads). `runtime` records which runtime ran the chain.
        """
        if runtime not in RUNTIMES:
            raise InputError(f"unknown runtime {runtime!r}: use one of {list(RUNTIMES)}")
        self.models = models
        self.config = config or ChainConfig()
        # Hough networks with an input pooling layer run as twins fed the pooled 8-bit image
        twins = {
            f.name: _pooled_twin(getattr(models, f.name))
            if self.config.pooled_inputs
            else (getattr(models, f.name), 1)
            for f in fields(models)
            if getattr(models, f.name) is not None
        }
        runnable = ChainModels(**{name: model for name, (model, _) in twins.items()})
        if runtime == "onnx":
            runnable = _to_onnx(runnable, onnx_threads)
        self.flight = flight
        self.runtime = runtime
        self.versions: dict[str, str] = dict(versions)
        c = self.config
        self._runners = {
            f.name: Runner(
                getattr(runnable, f.name),
                {"inelastic_raw_stk": c.raw_stk_chunk}.get(
                    f.name, c.hough_chunk if f.name.startswith(("hough", "inelastic_h")) else c.chunk
                ),
                input_pool=twins[f.name][1],
            )
            for f in fields(runnable)
            if getattr(runnable, f.name) is not None
        }
        self.timings: dict[str, float] = {}
        self.n_events = 0
        #: the clock of `timings`: wall time; benchmarks on a shared machine use time.process_time
        self.clock = time.perf_counter

    # -- construction from the registry

    @classmethod
    def from_registry(
        cls,
        alias: str = "production",
        flight: bool = False,
        runtime: str = "tensorflow",
        config: ChainConfig | None = None,
        onnx_threads: int = 0,
    ) -> Chain:
        """Load every network at `alias` (MLFLOW_TRACKING_URI's store), once.

        With `flight`, each BGO range uses `bgo-direction-<range>-aligned@alias` where it is
        registered and the base model otherwise; `versions` names the one used. With
        runtime="onnx" every network is converted and parity-checked (onnx_export) and runs in
        onnxruntime (`onnx_threads` > 0 fixes its threads).
        """
        if runtime not in RUNTIMES:  # before any loading
            raise InputError(f"unknown runtime {runtime!r}: use one of {list(RUNTIMES)}")
        chosen = chosen_models(alias, flight)  # all errors before any loading
        return cls.from_versions(chosen, flight, runtime, config, onnx_threads)

    @classmethod
    def from_versions(
        cls,
        chosen: Mapping[str, tuple[str, str]],
        flight: bool = False,
        runtime: str = "tensorflow",
        config: ChainConfig | None = None,
        onnx_threads: int = 0,
    ) -> Chain:
        """The chain of exactly these versions ({ChainModels field: (name, version)}, e.g. from
        :func:`chosen_models`), each loaded once through the safe loader; fields not given stay None."""

        loaded = {f: load_model(f"models:/{name}/{version}") for f, (name, version) in chosen.items()}
        versions = dict(chosen.values())
        return cls(ChainModels(**loaded), versions, flight, config, runtime, onnx_threads)

    # -- bookkeeping

    def _timed(self, stage: str, t0: float) -> float:
        t1 = self.clock()
        self.timings[stage] = self.timings.get(stage, 0.0) + (t1 - t0)
        return t1

    def reset_timings(self) -> None:
        self.timings = {}
        self.n_events = 0
        for runner in self._runners.values():
            runner.n_events = 0

    @property
    def network_events(self) -> dict[str, int]:
        """Events each network ran on since the last reset (ChainModels field -> count)."""
        return {name: runner.n_events for name, runner in self._runners.items()}

    # -- stages

    @staticmethod
    def bgo_range(deposit_mev: np.ndarray, config: ChainConfig) -> np.ndarray:
        """0/1/2 (low/mid/high) per event from the deposited energy (MeV)."""
        return np.searchsorted(
            [config.low_mid_switch_mev, config.mid_high_switch_mev], deposit_mev, side="right"
        )

    def _hough_step(
        self,
        runner: Runner,
        stk: tuple,
        track: np.ndarray,
        rows: np.ndarray,
        geometry: HoughGeometry,
        stage: str,
    ) -> np.ndarray:
        """Refine `track` for events `rows` with a Hough regression network around it (returns a copy)."""
        counts, layer, pos, signal = stk
        t0 = self.clock()
        out = track.copy()
        rows = rows[_finite_rows(track[rows])]
        roi = track[rows]
        hits = _select(counts, layer, pos, signal, roi, geometry, rows)
        has = hits.counts > 0  # empty RoI: keep the previous track (see the module doc)
        rows, roi = rows[has], roi[has]
        hits = RoiHits(hits.counts[has], hits.layer, hits.offset, hits.signal)  # empty events hold no hits
        t0 = self._timed(f"{stage}_select", t0)
        c = self.config.hough_chunk
        offsets = np.zeros((len(rows), 4), dtype=np.float32)
        for s in range(0, len(rows), c):
            img = hough_input(hits.events(s, s + c), roi[s : s + c], geometry, self.config.zthr)
            t0 = self._timed(f"{stage}_render", t0)
            offsets[s : s + c] = runner({runner.input_names[0]: img})
            t0 = self._timed(f"{stage}_network", t0)
        out[rows] = apply_offsets(roi, offsets, geometry)
        return out

    def _tracker(
        self, stk: tuple, seed: np.ndarray, coarse: np.ndarray, stage: str, precise: bool = True
    ) -> np.ndarray:
        """The tracker CNNs around `seed`: coarse Hough where `coarse`, then (if `precise`) precise
        Hough everywhere."""
        c = self.config
        runners = self._runners
        track = self._hough_step(
            runners["hough_coarse"], stk, seed, np.flatnonzero(coarse), c.coarse, f"{stage}coarse"
        )
        if not precise:
            return track
        for _ in range(c.precise_passes):
            track = self._hough_step(
                runners["hough_precise"], stk, track, np.arange(len(seed)), c.precise, f"{stage}precise"
            )
        return track

    def tracker_track(self, events: Mapping[str, Any], seed: np.ndarray, precise: bool = True) -> np.ndarray:
        """The tracker CNNs alone around any (N, 4) `seed`, two-step (coarse, then precise) for every event.

        The paper's Table 3, option (b), seeds them with the BGO shower-axis fit: it measures
        the tracker networks without the calorimeter ones. `precise=False` stops after the
        coarse step (the RoIs a precise network is trained on). Timed as `seeded_*` stages.
        """
        events = {k: events[k] for k in events if not _is_truth(k)}
        seed = np.asarray(seed, dtype=np.float64)
        counts, layer, pos, signal, _, _ = _flat_stk(events, len(seed))
        every = np.ones(len(seed), dtype=bool)
        return self._tracker((counts, layer, pos, signal), seed, every, "seeded_", precise)

    def run(self, events: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Reconstruct a batch: `events` as read by io.root_reader.read_events; OUTPUT_COLUMNS -> (N,)."""
        events = {k: events[k] for k in events if not _is_truth(k)}  # MC and flight alike: no truth read
        c = self.config
        t0 = self.clock()
        energy = np.asarray(events["bgo_energy"], dtype=np.float32)
        n = len(energy)
        stk = _flat_stk(events, n)
        counts, layer, pos, signal, half, channel = stk
        hough_stk = (counts, layer, pos, signal)
        self._timed("read_flatten", t0)

        # 1-3. BGO networks, seed, coarse Hough below ~1 TeV, precise Hough, refit to the hits
        deposit = energy.sum(axis=(1, 2), dtype=np.float64)
        bgo, which, image, axis_seeded, track = self._front(energy, deposit, hough_stk, "final")

        # 4. hits and charge
        t0 = self.clock()
        width = _flat_width(events, counts)
        charge, assigned = stk_charge(layer, pos, signal, track, counts, c.assign_window_mm, width)
        t0 = self._timed("hits_charge", t0)

        # 5. inelastic classifier: raw STK x Hough (400 um around the final track)
        runner = self._runners["inelastic_raw_stk"]
        p_raw = np.zeros(n, dtype=np.float32)
        starts = np.concatenate([[0], np.cumsum(counts)])
        for s in range(0, n, c.raw_stk_chunk):  # 74 kB images, ~2.4 MB of full-preset activations each
            e = min(n, s + c.raw_stk_chunk)
            h = slice(starts[s], starts[e])
            raw = raw_stk_input(layer[h], half[h], channel[h], signal[h], counts[s:e])
            t0 = self._timed("inelastic_stk_image", t0)
            p_raw[s:e] = runner({runner.input_names[0]: raw})[:, 0]
            t0 = self._timed("inelastic_stk_network", t0)
        p_hough = self._inelastic_hough(hough_stk, track)
        t0 = self.clock()

        # 6. electron/proton
        variables = shower_input(energy)
        t0 = self._timed("shower_variables", t0)
        runner = self._runners["electron_proton"]
        p_electron = runner({"x_image": image, "x_vars": variables})[:, 0]
        t0 = self._timed("electron_network", t0)

        tx, ty = slopes(track)
        out: dict[str, np.ndarray] = {}
        for i, name in enumerate(TRACK_COLUMNS):
            out[name] = track[:, i]
        for i, name in enumerate(BGO_COLUMNS):
            out[name] = bgo[:, i]
        out["theta"] = np.arccos(cos_theta(track))
        out["phi"] = np.arctan2(ty, tx)
        out["stk_charge"] = charge
        out["n_track_hits"] = assigned.n_hits.astype(np.int32)
        out["inelastic_score"] = (p_raw * p_hough).astype(np.float32)
        out["electron_score"] = p_electron.astype(np.float32)
        out["bgo_model"] = np.asarray(ENERGY_RANGES)[which]
        out["axis_seed"] = axis_seeded.astype(np.int32)
        axis, _ = fit_shower_axis(energy)  # NaN rows where it cannot be fitted
        for i, name in enumerate(AXIS_COLUMNS):
            out[name] = axis[:, i]
        out["bgo_energy_mev"] = deposit
        out["zeta"] = variables[:, ZETA].astype(np.float32)
        self.n_events += n
        self._timed("outputs", t0)
        return out

    def _front(
        self, energy: np.ndarray, deposit: np.ndarray, hough_stk: tuple, until: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Stages 1-3 up to `until` (a key of UPSTREAM_FIELDS): (BGO track, energy-range index,
        BGO image, where the seed is the axis fit, the track after `until`)."""
        c = self.config
        bgo, which, image = self._bgo(energy, deposit)
        t0 = self.clock()
        seed, axis_seeded = choose_seed(bgo, energy, c.axis_seed_from_layer)
        self._timed("seed", t0)
        if until == "seed":
            return bgo, which, image, axis_seeded, seed
        track = self._tracker(hough_stk, seed, deposit < c.coarse_below_mev, "", precise=until == "final")
        if until == "final" and c.refit_window_mm is not None:
            counts, layer, pos, signal = hough_stk
            t0 = self.clock()
            track = refit_track(
                layer,
                pos,
                signal,
                track,
                counts=counts,
                window_mm=c.refit_window_mm,
                outlier_mm=c.refit_outlier_mm,
            )
            self._timed("refit", t0)
        return bgo, which, image, axis_seeded, track

    def upstream_track(self, events: Mapping[str, Any], stage: str) -> np.ndarray:
        """The (N, 4) track the chain has after `stage` ("seed", "coarse", "final"), computed
        exactly as :meth:`run` computes it: what a network downstream of that stage receives."""
        if stage not in UPSTREAM_FIELDS:
            raise InputError(f"unknown chain stage {stage!r}: use one of {list(UPSTREAM_FIELDS)}")
        events = {k: events[k] for k in events if not _is_truth(k)}
        energy = np.asarray(events["bgo_energy"], dtype=np.float32)
        deposit = energy.sum(axis=(1, 2), dtype=np.float64)
        hough_stk = _flat_stk(events, len(energy))[:4] if stage != "seed" else ()
        return self._front(energy, deposit, hough_stk, stage)[4]

    def seed_track(self, events: Mapping[str, Any]) -> np.ndarray:
        """Stage 1 alone: the (N, 4) seed of the tracker CNNs (BGO network or, late showers, axis fit)."""
        return self.upstream_track(events, "seed")

    def _bgo(self, energy: np.ndarray, deposit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stage 1: (track, energy-range index, image) of every event, each range's network on its events."""
        t0 = self.clock()
        image = bgo_input(energy)
        which = self.bgo_range(deposit, self.config)
        t0 = self._timed("bgo_image", t0)
        bgo = np.full((len(energy), 4), np.nan)
        for i, r in enumerate(ENERGY_RANGES):
            rows = np.flatnonzero(which == i)
            if len(rows):
                runner = self._runners[f"bgo_{r}"]
                bgo[rows] = runner({runner.input_names[0]: image[rows]})
        self._timed("bgo_network", t0)
        return bgo, which, image

    def _inelastic_hough(self, stk: tuple, track: np.ndarray) -> np.ndarray:
        """P(no inelastic) of the Hough network: every event (the dataset keeps empty RoIs too)."""
        counts, layer, pos, signal = stk
        c = self.config
        t0 = self.clock()
        roi = track
        hits = select_roi_hits(layer, pos, signal, roi, c.inelastic, counts=counts)
        t0 = self._timed("inelastic_select", t0)
        runner = self._runners["inelastic_hough"]
        p = np.zeros(len(track), dtype=np.float32)
        for s in range(0, len(track), c.hough_chunk):
            img = hough_input(
                hits.events(s, s + c.hough_chunk), roi[s : s + c.hough_chunk], c.inelastic, c.zthr
            )
            t0 = self._timed("inelastic_render", t0)
            p[s : s + c.hough_chunk] = runner({runner.input_names[0]: img})[:, 0]
            t0 = self._timed("inelastic_hough_network", t0)
        return p


# --------------------------------------------------------------------------- network inputs
# Each is what datasets.loader feeds the network in training, from event branches instead of
# stored columns (same feature functions, same arguments; tests/test_chain.py compares them).


def choose_seed(
    bgo_track: np.ndarray, bgo_energy: np.ndarray, axis_from_layer: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The tracker's seed and (N,) bool where it is the shower-axis fit (ChainConfig.axis_seed_from_layer).

    Late or absent showers take the axis fit where it is valid; every other row keeps the BGO
    network's track.
    """
    seed = np.array(bgo_track, dtype=np.float64)
    if axis_from_layer is None:
        return seed, np.zeros(len(seed), dtype=bool)
    start = shower_start_layer(bgo_energy)
    late = np.flatnonzero((start >= axis_from_layer) | (start < 0))
    axis, valid = fit_shower_axis(np.asarray(bgo_energy)[late])
    use = np.zeros(len(seed), dtype=bool)
    use[late[valid]] = True
    seed[late[valid]] = axis[valid]
    return seed, use


def bgo_input(bgo_energy: np.ndarray) -> np.ndarray:
    """(N, 14, 22, 1) float32: the BGO direction networks' and HAMF's image ('x', 'x_image')."""
    return to_float(bgo_image(bgo_energy))[..., None]


def shower_input(bgo_energy: np.ndarray) -> np.ndarray:
    """(N, 34) float32 shower variables, HAMF's 'x_vars' (stored as float32 in the datasets)."""
    return shower_variables(bgo_energy)[0].astype(np.float32)


def raw_stk_input(layer, half, channel, signal, counts: np.ndarray) -> np.ndarray:
    """(N, 24, 3072, 1) uint8 raw STK image of the inelastic raw-STK network."""
    return render_stk_image(layer, half, channel, signal, counts=counts)[..., None]


def hough_input(hits: RoiHits, centre: np.ndarray, geometry: HoughGeometry, zthr: float | None) -> np.ndarray:
    """(B, n, n, 4) uint8 Hough images of the RoI hits selected around `centre` (B, 4).

    As in the datasets: hits selected (and offsets taken) around the float64 centre, the path
    length correction from the centre as stored (float32 `roi_*` columns) and read by the loader.
    """
    return render_hough(hits, cos_theta(np.asarray(centre).astype(np.float32)), geometry, zthr)


def _pooled_twin(model: Any) -> tuple[Any, int]:
    """models.hough_cnn.pooled_input_twin for a tf-keras model; anything else as it is (factor 1)."""
    if not hasattr(model, "predict_on_batch"):
        return model, 1

    return pooled_input_twin(model)


def _to_onnx(models: ChainModels, threads: int) -> ChainModels:
    """Every tf-keras model of `models` as a parity-checked onnxruntime session."""

    out = {}
    for f in fields(models):
        model = getattr(models, f.name)
        out[f.name] = session(export(model).onnx, threads) if hasattr(model, "predict_on_batch") else model
    return ChainModels(**out)


def _is_truth(branch: str) -> bool:
    return branch in MC_ONLY or branch.startswith("true_")


def _flat_stk(events: Mapping[str, Any], n: int) -> tuple[np.ndarray, ...]:
    """(counts, layer, pos, signal, half, channel) flat, from jagged branches or flat ones + `nstk`."""
    missing = [b for b in ("bgo_energy", *STK_BRANCHES) if b not in events]
    if missing:
        raise KeyError(f"events lack branches {missing}: the chain needs bgo_energy and {list(STK_BRANCHES)}")
    arrays = [events[b] for b in ("stk_layer", "stk_pos", "stk_signal", "stk_half", "stk_channel")]
    counts = events.get("nstk") if isinstance(arrays[0], np.ndarray) else None
    counts, flat = flatten(arrays, counts)
    if len(counts) != n:
        raise ValueError(f"{len(counts)} events of STK hits for {n} BGO events")
    return (counts, *flat)


def _flat_width(events: Mapping[str, Any], counts: np.ndarray) -> np.ndarray | None:
    """The clusters' widths, flat, where the events carry them (version-3 files); else None."""
    if "stk_width" not in events:
        return None
    width = events["stk_width"]
    return flatten([width], counts if isinstance(width, np.ndarray) else None)[1][0]


def _select(counts, layer, pos, signal, roi, geometry, rows):
    """select_roi_hits for the events `rows` only (flat hits of those events gathered first)."""
    idx = gather_index(counts, rows)
    return select_roi_hits(layer[idx], pos[idx], signal[idx], roi, geometry, counts=counts[rows])
