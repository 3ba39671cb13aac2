"""ONNX export of registered networks: parity with TensorFlow, and the whole chain on onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

import dampeml  # noqa: F401  (tf-keras before TensorFlow)
from dampeml.io.root_reader import read_events
from dampeml.models.catalog import build
from dampeml.reconstruction.chain import NETWORK_OF_FIELD, OUTPUT_COLUMNS, Chain
from dampeml.reconstruction.onnx_export import OnnxParityError, export, parity, session, to_onnx
from dampeml.registry.models import RegistryError, load_model

REGISTERED = sorted({*NETWORK_OF_FIELD.values(), "bgo-direction-low-aligned"})


@pytest.mark.timeout(600)
def test_every_registered_network_exports_with_parity(registered_models, monkeypatch, tmp_path):
    """Each registered network converts, matches TensorFlow within tolerance, and reloads from file."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_models)
    rng = np.random.default_rng(2024)  # not export()'s own inputs (example_inputs, seed 0)
    for name in REGISTERED:
        uri = f"models:/{name}@production"
        result = export(uri, path=tmp_path / f"{name}.onnx")
        # measured here, not read back from export() (which raises above its own bound): the
        # registered Keras model and the saved ONNX file on fresh inputs, sparse and dense
        model = load_model(uri)
        sess = session(tmp_path / f"{name}.onnx")
        assert [i.name for i in sess.get_inputs()] == list(model.input_names)
        feeds = {}
        for i, t in zip(sess.get_inputs(), model.inputs, strict=True):
            shape = (8, *t.shape[1:])
            if "uint8" in i.type:  # images: half sparse (as events are), half lit everywhere
                dense = rng.integers(0, 256, shape)
                feeds[i.name] = np.where(rng.random(shape) < 0.02, dense, 0).astype(np.uint8)
                feeds[i.name][4:] = dense[4:]
            else:
                feeds[i.name] = rng.uniform(0.0, 10.0, shape).astype(np.float32)  # >= 0, as the variables
        x = feeds[model.input_names[0]] if len(feeds) == 1 else feeds
        ref = np.asarray(model.predict_on_batch(x), dtype=np.float64)
        got = np.asarray(sess.run(None, feeds)[0], dtype=np.float64)
        diff = float(np.max(np.abs(ref - got)))
        # float32 round-off of reordered sums: 1e-4 absolute + 1e-5 of the output scale
        bound = 1e-4 + 1e-5 * float(np.max(np.abs(ref)))
        print(
            f"{name:28s} max |TF - ONNX| = {diff:.2e} (bound {bound:.2e}; "
            f"export said {result.max_abs_diff:.2e})"
        )
        assert got.shape == ref.shape and np.isfinite(got).all()
        assert diff <= bound, name
        # the saved file gives the same outputs as the checked bytes
        np.testing.assert_array_equal(session(result.onnx).run(None, feeds)[0], sess.run(None, feeds)[0])


def test_parity_check_catches_a_wrong_export():
    """The check is not vacuous: an export of other weights fails it."""
    model = build("bgo-direction-low", preset="small", compile=False)
    onnx = to_onnx(model)
    diff, tolerance = parity(model, onnx)
    print(f"same weights: {diff:.2e} <= {tolerance:.2e}")
    weights = model.get_weights()
    model.set_weights([w + 0.01 for w in weights])
    with pytest.raises(OnnxParityError, match="differs from TensorFlow"):
        parity(model, onnx)


def test_export_of_a_missing_model_is_a_registry_error(registered_models, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_models)
    with pytest.raises(RegistryError, match="no-such-net"):
        export("models:/no-such-net@production")
    with pytest.raises(RegistryError, match="not a registry URI"):
        export("/some/path/model.keras")


@pytest.mark.timeout(600)
def test_chain_outputs_agree_between_runtimes(registered_models, sample_files, monkeypatch):
    """Chain(runtime='onnx') gives the TensorFlow chain's outputs on the same events.

    Each network agrees to ~1e-5 on identical inputs (above); through the chain a track differing
    by 1e-6 mm can move a hit across a Hough pixel edge or the RoI edge, and that event's image,
    hence its score, then differs slightly: tolerated for at most 5% of the events (printed; 1-3%
    seen with the session's random weights). A wrong conversion differs in nearly every event.
    """
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_models)
    events = read_events(sample_files["helium"], entry_stop=300)
    n = len(events["event_id"])
    tf_chain = Chain.from_registry(alias="production")
    onnx_chain = Chain.from_registry(alias="production", runtime="onnx")
    assert onnx_chain.runtime == "onnx" and onnx_chain.versions == tf_chain.versions
    a, b = tf_chain.run(events), onnx_chain.run(events)
    assert tuple(b) == OUTPUT_COLUMNS
    np.testing.assert_array_equal(a["bgo_model"], b["bgo_model"])
    for k in OUTPUT_COLUMNS:
        if k == "bgo_model":
            continue
        x, y = a[k].astype(np.float64), b[k].astype(np.float64)
        assert np.array_equal(np.isnan(x), np.isnan(y)), k
        atol = 1e-3 if k.startswith(("track", "bgo")) or k in ("theta", "phi") else 1e-5  # mm, rad, scores
        off = ~np.isclose(y, x, atol=atol, rtol=1e-5, equal_nan=True)
        diff = np.nanmax(np.abs(x - y)) if np.isfinite(x).any() else 0.0
        print(f"{k:16s} max |TF - ONNX| = {diff:.2e}; {off.sum()} of {n} events beyond {atol:g}")
        # 5%, not the 2% it was: which events flip is set by hits within ~1e-4 pixel of an edge,
        # i.e. by the weights (they place the RoI) and by the float summation order (thread count,
        # so the machine). Seen: 1-3% with unseeded random weights, 4 of 300 (1.3%) with the
        # session's seeded ones here; 2% left two events of margin. A wrong conversion moves
        # nearly every event, so 5% (15 events) still tells the two apart.
        assert off.sum() <= 0.05 * n, k
        assert diff < 1e-2 * max(1.0, float(np.nanmax(np.abs(x)))), k
