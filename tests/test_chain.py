"""The reconstruction chain: inputs as in training, stage logic, known tracks recovered, registry, flight."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import awkward as ak
import numpy as np
import pyarrow as pa
import pytest

import dampeml  # noqa: F401  (tf-keras before TensorFlow)
from dampeml.datasets.columns import feature_columns, roi_centre
from dampeml.datasets.loader import network_batch
from dampeml.datasets.spec import load_spec
from dampeml.features import (
    COARSE,
    PRECISE,
    HoughGeometry,
    fit_shower_axis,
    select_roi_hits,
    shower_start_layer,
    truth_track,
)
from dampeml.io.root_reader import read_events
from dampeml.io.schema import MC_ONLY
from dampeml.models.catalog import build
from dampeml.models.common import tf_keras
from dampeml.pipeline.demo import REFERENCE_ZOO
from dampeml.reconstruction.chain import (
    ENERGY_RANGES,
    NETWORK_OF_FIELD,
    OUTPUT_COLUMNS,
    TRACK_COLUMNS,
    Chain,
    ChainConfig,
    ChainModels,
    bgo_input,
    hough_input,
    raw_stk_input,
    shower_input,
)
from dampeml.reconstruction.hits import refit_track
from dampeml.registry.models import RegistryError
from dampeml.registry.zoo import chain_config, load_zoo_model, read_index
from tests.conftest import simulated

DATASETS = "datasets"
# The paper's numbers, written out here (not read from the chain) so that the expectations below
# do not follow a change of the chain's own constants: the coarse RoI is 400 pixels of 400 um
# (+-80 mm), the precise one 400 pixels of 50 um (+-10 mm); a shower that starts in BGO layer 11
# or later (of 14), or never, is seeded by the shower-axis fit; two precise passes.
PAPER_COARSE = HoughGeometry(0.4, 400)
PAPER_PRECISE = HoughGeometry(0.05, 400)
LATE_SHOWER_LAYER = 11
PRECISE_PASSES = 2


def _concat(*batches: dict) -> dict:
    out = {}
    for k in batches[0]:
        v = [b[k] for b in batches]
        out[k] = ak.concatenate(v) if isinstance(v[0], ak.Array) else np.concatenate(v)
    return out


def _track(out: dict) -> np.ndarray:
    return np.stack([out[c] for c in TRACK_COLUMNS], axis=1)


def _constant(name: str, values) -> object:
    """A stand-in for catalog network `name` (same input) whose output is the constant `values`."""
    keras = tf_keras()
    reference = build(name, preset="small", compile=False)
    inp = keras.Input(reference.inputs[0].shape[1:], dtype=reference.inputs[0].dtype, name="x")
    pooled = keras.layers.GlobalMaxPooling2D()(keras.layers.Rescaling(1.0)(inp))
    head = keras.layers.Dense(len(values), kernel_initializer="zeros")
    model = keras.Model(inp, head(pooled))
    head.set_weights([np.zeros_like(head.get_weights()[0]), np.asarray(values, dtype=np.float32)])
    return model


def _untrained(seed: int = 11) -> dict:
    """The chain's small networks with seeded random weights: the same in every run and test order.

    Unseeded, a test's weights depended on what ran before it; with some of them an event lay on
    a cut (a RoI edge, the 0.3 mm hit window) that float noise of another batch size crossed.
    """
    tf_keras().utils.set_random_seed(seed)
    return {f: build(n, preset="small", compile=False) for f, n in NETWORK_OF_FIELD.items()}


class NoTruth(Mapping):
    """Events that raise on any read of an MC-only branch: proves the chain never touches truth."""

    def __init__(self, events: dict) -> None:
        self._events = events

    def __getitem__(self, key: str):
        if key in MC_ONLY or key.startswith("true_"):
            raise AssertionError(f"the chain read the truth branch {key!r}")
        return self._events[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)


# --------------------------------------------------------------------------- inputs as in training


@pytest.fixture(scope="module")
def mixed_events() -> dict:
    """Protons and helium over the whole range, electrons: every BGO range and the coarse step. The
    protons untriggered (as other triggers than the high-energy one record them): late and absent
    showers, which the high-energy trigger never records, exercise the axis-fit seed."""
    return _concat(
        simulated("proton", 150, 10, 1e6, seed=41, trigger=False),
        simulated("helium", 100, 10, 1e6, seed=42),
        simulated("electron", 50, 10, 1e4, seed=43),
    )


@pytest.mark.parametrize(
    "spec_name",
    [
        "bgo-direction-low-small",
        "electron-proton-small",
        "inelastic-raw-stk-small",
        "stk-hough-precise-small",
        "stk-hough-coarse-small",
        "inelastic-hough-small",
    ],
)
def test_chain_inputs_equal_training_inputs(mixed_events, spec_name):
    """For the same events, the chain's network inputs are bit-identical to the training loader's."""
    spec = load_spec(f"{DATASETS}/{spec_name}.yaml")
    cols, _keep, _ = feature_columns(mixed_events, spec)
    batch = network_batch(pa.table(cols), {"kind": spec.kind, "spec": spec.model_dump(mode="json")})
    e = mixed_events["bgo_energy"]
    if spec.kind in ("bgo-direction", "electron-proton"):
        key = "x" if spec.kind == "bgo-direction" else "x_image"
        np.testing.assert_array_equal(bgo_input(e), batch[key])
        if spec.kind == "electron-proton":
            np.testing.assert_array_equal(shower_input(e), batch["x_vars"])
        return
    counts = ak.num(mixed_events["stk_layer"]).to_numpy()
    flat = {k: ak.flatten(mixed_events[k]).to_numpy() for k in ("stk_layer", "stk_half", "stk_channel")}
    flat.update({k: ak.flatten(mixed_events[k]).to_numpy() for k in ("stk_pos", "stk_signal")})
    if spec.kind == "inelastic-raw-stk":
        mine = raw_stk_input(
            flat["stk_layer"], flat["stk_half"], flat["stk_channel"], flat["stk_signal"], counts
        )
        np.testing.assert_array_equal(mine, batch["x"])
        return
    # Hough: the chain's rendering around the dataset's stored RoI centre (chain geometry constants)
    config = ChainConfig()
    stored = {"coarse": COARSE, "precise": PRECISE}[spec.roi.geometry]
    geometry = config.inelastic if spec.kind == "inelastic-hough" else stored
    assert geometry == stored, "the chain renders this network's image as its dataset did"
    assert spec.roi.zthr == config.zthr
    roi, _ = roi_centre(mixed_events, spec.roi)  # the float64 centre the dataset selected hits around
    hits = select_roi_hits(
        flat["stk_layer"], flat["stk_pos"], flat["stk_signal"], roi, geometry, counts=counts
    )
    mine = hough_input(hits, roi, geometry, config.zthr)
    assert mine.shape == batch["x"].shape
    assert np.array_equal(mine, batch["x"]), f"{np.count_nonzero(mine != batch['x'])} pixels differ"
    print(f"{spec_name}: {int(np.count_nonzero(mine))} lit pixels identical over {len(mine)} events")


def test_chain_constants_match_dataset_specs():
    """The chain's RoI geometries and switches are the ones its networks' datasets were built with."""
    config = ChainConfig()
    coarse = load_spec(f"{DATASETS}/stk-hough-coarse.yaml")
    precise = load_spec(f"{DATASETS}/stk-hough-precise.yaml")
    inelastic = load_spec(f"{DATASETS}/inelastic-hough.yaml")
    assert {"coarse": COARSE}[coarse.roi.geometry] == config.coarse
    assert {"precise": PRECISE}[precise.roi.geometry] == config.precise
    assert {"coarse": COARSE}[inelastic.roi.geometry] == config.inelastic
    assert (coarse.roi.upstream, precise.roi.upstream, inelastic.roi.upstream) == ("seed", "coarse", "final")
    assert coarse.selection.deposit_gev.max * 1e3 == config.coarse_below_mev
    # the chain with its coarse step everywhere: its coarse network sees every deposit, and the
    # precise one the coarse network's track at every energy
    coarse_all = load_spec(f"{DATASETS}/stk-hough-coarse-everywhere.yaml")
    precise_all = load_spec(f"{DATASETS}/stk-hough-precise-everywhere.yaml")
    assert coarse_all.selection.deposit_gev.max is None and precise_all.roi.coarse_everywhere
    assert (coarse_all.roi.geometry, precise_all.roi.geometry) == (coarse.roi.geometry, precise.roi.geometry)
    assert (config.low_mid_switch_mev, config.mid_high_switch_mev) == (300e3, 20e6)
    assert (config.coarse, config.precise) == (PAPER_COARSE, PAPER_PRECISE)
    assert (config.axis_seed_from_layer, config.precise_passes) == (LATE_SHOWER_LAYER, PRECISE_PASSES)


# --------------------------------------------------------------------------- stage logic, exact


def test_energy_ranges_and_coarse_step_per_event(mixed_events):
    """Each event goes to its energy-range model; late or absent showers are seeded by the axis fit;
    the coarse step only below 1 TeV and only with RoI hits; the default refit moves the result onto
    the hits near it (reconstruction.hits.refit_track).

    BGO models output a distinct constant track per range; the coarse network says "the track
    is 20 pixels (8 mm) further in every coordinate", the precise one "the track is where you
    put it" (the image centre). So the final track tells which stages an event went through.
    """
    models = _untrained()
    bgo_tracks = {"low": [1.0, 2.0, 3.0, 4.0], "mid": [-5.0, 5.0, -5.0, 5.0], "high": [10.0, 0.0, 0.0, 10.0]}
    for r in ENERGY_RANGES:
        models[f"bgo_{r}"] = _constant(NETWORK_OF_FIELD[f"bgo_{r}"], bgo_tracks[r])
    models["hough_coarse"] = _constant("stk-hough-coarse", [220.0] * 4)
    models["hough_precise"] = _constant("stk-hough-precise", [200.0] * 4)
    versions = {n: "test" for n in NETWORK_OF_FIELD.values()}
    chain = Chain(ChainModels(**models), versions, config=ChainConfig(refit_window_mm=None))
    out = chain.run(mixed_events)
    # the default chain refits that track to the hits near it, and changes nothing else
    refitted = Chain(ChainModels(**models), versions).run(mixed_events)
    stk = (mixed_events["stk_layer"], mixed_events["stk_pos"], mixed_events["stk_signal"])
    np.testing.assert_allclose(_track(refitted), refit_track(*stk, _track(out)), atol=1e-6)
    moved = (np.abs(_track(refitted) - _track(out)) > 1e-3).any(axis=1)
    print(f"refit moved {moved.sum()} of {len(moved)} tracks (the others have < 3 hits within 2 mm)")
    assert moved.any()
    np.testing.assert_array_equal(refitted["axis_seed"], out["axis_seed"])

    deposit = mixed_events["bgo_energy"].sum(axis=(1, 2), dtype=np.float64)
    expected_range = np.where(deposit < 300e3, "low", np.where(deposit < 20e6, "mid", "high"))
    np.testing.assert_array_equal(out["bgo_model"], expected_range)
    counts = {r: int((expected_range == r).sum()) for r in ENERGY_RANGES}
    print("events per range", counts)
    assert all(counts.values()), "the sample must exercise all three ranges"
    bgo = np.stack([out[c] for c in ("bgo_x_top", "bgo_y_top", "bgo_x_bot", "bgo_y_bot")], axis=1)
    np.testing.assert_allclose(bgo, np.array([bgo_tracks[r] for r in expected_range]), atol=1e-5)

    # the seed: the BGO track, or the shower-axis fit where the shower starts in the last layers
    start = shower_start_layer(mixed_events["bgo_energy"])
    axis, valid = fit_shower_axis(mixed_events["bgo_energy"])
    late = ((start >= LATE_SHOWER_LAYER) | (start < 0)) & valid
    print(f"axis-fit seed for {late.sum()} late or absent showers")
    assert 0 < late.sum() < len(late)
    np.testing.assert_array_equal(out["axis_seed"], late.astype(np.int32))
    seed = np.where(late[:, None], axis, bgo)

    # which events had hits in the coarse RoI around their seed
    hits = select_roi_hits(
        mixed_events["stk_layer"], mixed_events["stk_pos"], mixed_events["stk_signal"], seed, PAPER_COARSE
    )
    coarse = (deposit < 1e6) & (hits.counts > 0)
    shift = _track(out) - seed
    print(f"coarse step applied to {coarse.sum()} of {len(coarse)} events")
    assert 0 < coarse.sum() < len(coarse)
    np.testing.assert_allclose(shift[coarse], 8.0, atol=1e-3)  # 20 pixels x 0.4 mm
    np.testing.assert_allclose(shift[~coarse], 0.0, atol=1e-3)  # precise: zero offset


def test_tracker_track_runs_both_hough_steps_at_every_energy(mixed_events):
    """Table 3 (b): around any seed, coarse then precise (two passes) for every event with RoI hits,
    whatever its energy (the chain's own track runs the coarse step below 1 TeV only); a seed of
    NaN stays NaN."""
    models = _untrained()
    models["hough_coarse"] = _constant("stk-hough-coarse", [220.0] * 4)  # +8 mm in every coordinate
    models["hough_precise"] = _constant("stk-hough-precise", [190.0] * 4)  # -0.5 mm
    chain = Chain(ChainModels(**models), {})
    seed, _ = fit_shower_axis(mixed_events["bgo_energy"])
    seed[0] = np.nan
    track = chain.tracker_track(NoTruth(mixed_events), seed)

    stk = (mixed_events["stk_layer"], mixed_events["stk_pos"], mixed_events["stk_signal"])
    coarse = select_roi_hits(*stk, seed, PAPER_COARSE).counts > 0
    after_coarse = np.where(coarse[:, None], seed + 8.0, seed)
    expected = after_coarse
    for _ in range(PRECISE_PASSES):  # each pass around the previous one's track
        precise = select_roi_hits(*stk, expected, PAPER_PRECISE).counts > 0
        expected = np.where(precise[:, None], expected - 0.5, expected)
    deposit = mixed_events["bgo_energy"].sum(axis=(1, 2))
    print(f"coarse step on {coarse.sum()} events, {(coarse & (deposit >= 1e6)).sum()} of them above 1 TeV")
    assert (coarse & (deposit >= 1e6)).any() and (precise & ~coarse).sum() < precise.sum()
    assert np.isnan(track[0]).all()
    np.testing.assert_allclose(track[1:], expected[1:], atol=1e-3)
    assert {"seeded_coarse_network", "seeded_precise_network"} <= set(chain.timings)
    coarse_only = chain.tracker_track(NoTruth(mixed_events), seed, precise=False)
    np.testing.assert_allclose(coarse_only[1:], after_coarse[1:], atol=1e-3)
    one_pass = Chain(ChainModels(**models), {}, config=ChainConfig(precise_passes=1))
    first = select_roi_hits(*stk, after_coarse, PAPER_PRECISE).counts > 0
    np.testing.assert_allclose(
        one_pass.tracker_track(NoTruth(mixed_events), seed)[1:],
        np.where(first[:, None], after_coarse - 0.5, after_coarse)[1:],
        atol=1e-3,
    )
    with pytest.raises(ValueError, match="precise_passes"):
        ChainConfig(precise_passes=0)


def test_chunking_does_not_change_outputs(mixed_events):
    """Network calls and image rendering in chunks of any size give the same outputs per event."""
    models = ChainModels(**_untrained())
    versions = {n: "test" for n in NETWORK_OF_FIELD.values()}
    whole = Chain(models, versions).run(mixed_events)
    chunked = Chain(models, versions, config=ChainConfig(hough_chunk=7, raw_stk_chunk=5, chunk=3))
    parts = chunked.run(mixed_events)
    for k in OUTPUT_COLUMNS:
        if whole[k].dtype.kind in "fc":
            np.testing.assert_allclose(parts[k], whole[k], rtol=1e-5, atol=1e-5, err_msg=k)
        else:
            np.testing.assert_array_equal(parts[k], whole[k], err_msg=k)
    n = len(mixed_events["event_id"])
    assert chunked.network_events["inelastic_raw_stk"] == n and chunked.network_events["electron_proton"] == n


def test_an_events_outputs_do_not_depend_on_its_batch(mixed_events):
    """With the reference models, an event comes out of the chain with the same bits whatever events
    share its batch (here: alone, among 199, among 100): a killed and resumed reprocessing job (other
    batch boundaries) writes exactly what an uninterrupted one writes. Before every network call was
    padded to one size, four output columns differed in the last bits."""
    zoo = read_index(REFERENCE_ZOO)
    models = ChainModels(**{f: load_zoo_model(REFERENCE_ZOO, n) for f, n in NETWORK_OF_FIELD.items()})
    chain = Chain(models, {n: "zoo" for n in NETWORK_OF_FIELD.values()}, config=chain_config(zoo))
    n = len(mixed_events["event_id"])
    whole = chain.run(mixed_events)
    parts = [chain.run({k: v[a:b] for k, v in mixed_events.items()}) for a, b in ((0, 1), (1, 200), (200, n))]
    joined = {k: np.concatenate([p[k] for p in parts]) for k in OUTPUT_COLUMNS}
    same = {k: np.array_equal(joined[k], whole[k], equal_nan=whole[k].dtype.kind == "f") for k in joined}
    differ = [k for k, ok in same.items() if not ok]
    assert not differ, f"outputs that depend on the batch: {differ}"


def test_pooled_inputs_do_not_change_outputs(mixed_events):
    """Hough images pooled as 8-bit images before the networks (the default) or as floats inside them
    (the graphs as registered) give the same outputs per event."""
    models = ChainModels(**_untrained())
    pooled = Chain(models, {})
    assert pooled._runners["hough_coarse"].input_pool > 1  # the small preset pools its input
    inside = Chain(models, {}, config=ChainConfig(pooled_inputs=False))
    assert inside._runners["hough_coarse"].input_pool == 1
    a, b = pooled.run(mixed_events), inside.run(mixed_events)
    for k in OUTPUT_COLUMNS:
        if a[k].dtype.kind in "fc":
            np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-5, err_msg=k)
        else:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_empty_batch_and_unknown_runtime(mixed_events):
    """A batch of no events gives empty columns (a job may hand one over); a bad runtime is refused."""
    models = ChainModels(**_untrained())
    empty = {k: v[:0] for k, v in mixed_events.items()}
    out = Chain(models, {}).run(empty)
    assert tuple(out) == OUTPUT_COLUMNS and all(v.shape == (0,) for v in out.values())
    with pytest.raises(ValueError, match="unknown runtime 'torch'"):
        Chain(models, {}, runtime="torch")


# --------------------------------------------------------------------------- known tracks recovered


def _hough_peak_finder(n: int = 400, smooth: int = 3):
    """The classical Hough answer as a Keras model: the densest crossing of lines per projection.

    Not trained: sums the two charge channels of each projection, smooths over smooth x smooth
    pixels and returns the argmax's pixel centre as (x_top, y_top, x_bot, y_bot) image coordinates,
    the Hough networks' output convention.
    """
    import tensorflow as tf

    keras = tf_keras()
    inp = keras.Input((n, n, 4), dtype="uint8", name="x")
    h = keras.layers.Rescaling(1.0 / 42)(inp)
    projections = keras.layers.Conv2D(2, 1, use_bias=False, name="projections")
    h = projections(h)
    projections.set_weights([np.array([[1, 0], [1, 0], [0, 1], [0, 1]], np.float32).reshape(1, 1, 4, 2)])
    h = keras.layers.AveragePooling2D(smooth, strides=1, padding="same")(h)
    idx = tf.argmax(keras.layers.Reshape((n * n, 2))(h), axis=1)
    top = tf.cast(idx // n, tf.float32) + 0.5
    bot = tf.cast(idx % n, tf.float32) + 0.5
    return keras.Model(inp, tf.stack([top[:, 0], top[:, 1], bot[:, 0], bot[:, 1]], axis=1))


@pytest.mark.timeout(600)
def test_chain_recovers_injected_tracks():
    """Simulated p/He events (known tracks): the chain puts the track within 0.3 mm and measures Z.

    Learned part: the BGO direction network (small preset) trained here for ~30 s, far from the
    paper's precision, so the coarse step runs at every energy (coarse_below_mev=inf). Hough stages:
    the classical peak finder above, standing in for the Hough networks (their quality is the
    training tests' business); RoI placement, rendering, offsets -> track, the coarse -> precise
    hand-off, hit assignment and charge are the chain's own and must recover the truth. The
    truth is used only to score; the chain gets the events without it.
    """
    train = _concat(
        simulated("proton", 4000, 100.0, 1e4, seed=1), simulated("helium", 2000, 100.0, 1e4, seed=2)
    )
    test = _concat(simulated("proton", 300, 100.0, 1e4, seed=3), simulated("helium", 200, 100.0, 1e4, seed=4))
    tf_keras().utils.set_random_seed(5)  # the network's start and fit's batch order: the same every run
    bgo = build("bgo-direction-low", preset="small")
    bgo.fit(
        bgo_input(train["bgo_energy"]),
        truth_track(train).astype(np.float32),
        batch_size=128,
        epochs=25,
        verbose=0,
    )

    models = _untrained()
    models.update(bgo_low=bgo, bgo_mid=bgo, bgo_high=bgo)
    models.update(hough_coarse=_hough_peak_finder(), hough_precise=_hough_peak_finder())
    chain = Chain(ChainModels(**models), {}, config=ChainConfig(coarse_below_mev=np.inf))
    out = chain.run(NoTruth(test))

    truth = truth_track(test)
    clean = ~np.asarray(test["true_inelastic"])
    bgo_track = np.stack([out[c] for c in ("bgo_x_top", "bgo_y_top", "bgo_x_bot", "bgo_y_bot")], 1)
    seed = chain.seed_track(NoTruth(test))  # stage 1 alone: the network's track or, late showers, the axis
    by_axis = out["axis_seed"] == 1
    np.testing.assert_array_equal(seed[~by_axis], bgo_track[~by_axis])
    np.testing.assert_array_equal(seed[by_axis], fit_shower_axis(test["bgo_energy"])[0][by_axis])
    bgo_err = np.abs(bgo_track - truth)
    seeded = clean & (np.abs(seed - truth).max(axis=1) < 64.0)  # well inside the +-80 mm coarse RoI
    within = (np.abs(_track(out) - truth) <= 0.3).all(axis=1)
    print(
        f"BGO network: median |error| {np.median(bgo_err, axis=0).round(1)} mm; axis-fit seed for "
        f"{by_axis.sum()} late showers; {seeded.sum()}/{clean.sum()} clean events seeded within 64 mm"
    )
    print(
        f"track within 0.3 mm: {within[seeded].mean():.3f} of seeded clean events, "
        f"{within[clean].mean():.3f} of clean, {within.mean():.3f} of all"
    )
    z = np.where(np.asarray(test["true_pdg"]) == 2212, 1, 2)
    ok = seeded & within
    for charge in (1, 2):
        q = out["stk_charge"][ok & (z == charge)]
        hits = out["n_track_hits"][ok & (z == charge)]
        print(f"Z={charge}: median STK charge {np.median(q):.3f}, median hits {np.median(hits)}")
        assert abs(np.median(q) - charge) < 0.15 * charge
    assert seeded.sum() >= 0.4 * clean.sum(), "the in-test BGO network should seed most clean events"
    # The classical peak finder takes another line (albedo, a secondary) in the +-80 mm RoI for 8-11% of
    # seeded clean events, 10-80 mm off with seeds as good as the recovered events' (0.916 of 297 on
    # version 4's events, 0.895 of 294 on version 5's, whose tracker is drawn anew: +-0.018 each); a
    # broken hand-off or RoI loses far more. The same limit holds for the axis seed below.
    recovery_limit = 0.85
    assert within[seeded].mean() >= recovery_limit
    assert np.median(out["n_track_hits"][ok]) >= 10

    # Table 3 (b): the same Hough stages around the shower-axis fit
    axis, _ = fit_shower_axis(test["bgo_energy"])
    axis_seeded = clean & (np.abs(axis - truth).max(axis=1) < 64.0)
    axis_within = (np.abs(chain.tracker_track(NoTruth(test), axis) - truth) <= 0.3).all(axis=1)
    print(f"axis seed: track within 0.3 mm for {axis_within[axis_seeded].mean():.3f} of {axis_seeded.sum()}")
    assert axis_seeded.sum() >= 0.8 * clean.sum() and axis_within[axis_seeded].mean() >= recovery_limit


# --------------------------------------------------------------------------- registry, flight, outputs


def _check_outputs(out: dict, n: int) -> None:
    assert tuple(out) == OUTPUT_COLUMNS
    for k, v in out.items():
        assert v.shape == (n,), k
    for k in OUTPUT_COLUMNS:
        if k in ("bgo_model", "stk_charge"):
            continue
        assert np.isfinite(out[k]).all(), f"{k} has non-finite values"
    has = out["n_track_hits"] > 0
    assert np.isfinite(out["stk_charge"][has]).all() and np.isnan(out["stk_charge"][~has]).all()
    for k in ("inelastic_score", "electron_score"):
        assert ((out[k] >= 0) & (out[k] <= 1)).all()
    assert set(out["bgo_model"]) <= set(ENERGY_RANGES)


@pytest.mark.timeout(600)  # the session registry fixture may be set up here (~1-2 min)
def test_registry_chain_on_flight_and_mc_files(registered_models, sample_files, monkeypatch):
    """Registered models by alias; flight files (no truth branches) and MC files with truth hidden."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_models)
    chain = Chain.from_registry(alias="production", flight=True)
    print("versions", chain.versions)
    assert set(chain.versions) == {
        n + ("-aligned" if n.startswith("bgo-") else "") for n in NETWORK_OF_FIELD.values()
    }
    assert all(v == "1" for v in chain.versions.values())
    flight = read_events(sample_files["flight"])
    assert not any(k.startswith("true_") for k in flight)
    out = chain.run(flight)
    _check_outputs(out, len(flight["event_id"]))
    mc = read_events(sample_files["proton"])
    out_mc = Chain.from_registry(alias="production").run(NoTruth(mc))
    _check_outputs(out_mc, len(mc["event_id"]))
    stages = set(chain.timings)
    print({k: round(v, 3) for k, v in chain.timings.items()})
    assert {
        "bgo_network",
        "precise_network",
        "hits_charge",
        "inelastic_hough_network",
        "electron_network",
    } <= stages
    assert chain.n_events == len(flight["event_id"])


def test_flight_falls_back_to_base_bgo_models(registered_models, monkeypatch):
    """Without aligned models at the alias, flight processing uses the base models and says so."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_models)
    client = mlflow.MlflowClient(tracking_uri=registered_models)
    for name in NETWORK_OF_FIELD.values():
        client.set_registered_model_alias(name, "base-only", "1")
    chain = Chain.from_registry(alias="base-only", flight=True)
    assert set(chain.versions) == set(NETWORK_OF_FIELD.values())


def test_missing_alias_or_model_is_a_clear_registry_error(registered_models, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_models)
    with pytest.raises(RegistryError) as err:
        Chain.from_registry(alias="no-such-alias")
    message = str(err.value)
    print(message)
    assert "bgo-direction-low" in message and "@no-such-alias" in message
    assert "dampeml models list" in message and "dampeml models promote" in message

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'empty.db'}")
    from dampeml.registry.bootstrap import ensure_experiment

    ensure_experiment(tmp_path / "artifacts")
    with pytest.raises(RegistryError, match="no registered model 'bgo-direction-low'"):
        Chain.from_registry(alias="production")


def test_chain_settings_file_round_trip_and_bad_fields(tmp_path):
    """A settings file changes only what it names; the written record reads back identical; a
    mistyped field, a wrong type or an out-of-range value is refused naming the file and field."""
    from dampeml.reconstruction.config import ChainConfigError, read_chain_config

    path = tmp_path / "chain.yaml"
    path.write_text("precise_passes: 3\ncoarse: {pixel_mm: 0.5}\ncoarse_below_mev: .inf\n")
    config = read_chain_config(path)
    default = ChainConfig()
    assert config.precise_passes == 3 and config.coarse.pixel_mm == 0.5 and config.coarse.n_pixels == 400
    assert config.refit_window_mm == default.refit_window_mm  # not named: the default
    assert config.differences(default) == [
        "coarse_below_mev 1000000.0 (now inf)",
        "precise_passes 2 (now 3)",
        "coarse {'pixel_mm': 0.4, 'n_pixels': 400} (now {'pixel_mm': 0.5, 'n_pixels': 400})",
    ]
    (tmp_path / "back.yaml").write_text(config.to_yaml())
    assert read_chain_config(tmp_path / "back.yaml") == config
    assert default.with_coarse_below_tev(None) is default
    assert default.with_coarse_below_tev(2.0).coarse_below_mev == 2e6
    for text, field in [
        ("precise_pases: 3\n", "precise_pases"),
        ("precise_passes: two\n", "precise_passes"),
        ("precise_passes: 0\n", "precise_passes must be >= 1"),
        ("coarse_below_mev: -1\n", "coarse_below_mev must be >= 0"),
        ("coarse: {pixel_mm: -0.4}\n", "coarse"),
        ("- a list\n", "YAML mapping"),
    ]:
        path.write_text(text)
        with pytest.raises(ChainConfigError, match=field) as err:
            read_chain_config(path)
        assert str(path) in str(err.value)
    with pytest.raises(ChainConfigError, match="no such chain settings file"):
        read_chain_config(tmp_path / "missing.yaml")
