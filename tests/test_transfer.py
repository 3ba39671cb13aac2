"""Transfer learning: a frozen backbone trains only the head; the campaign report's columns relative to
the baseline (the seed's table: each variant's metric and training time over full training)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from dampeml.models.catalog import build
from dampeml.models.common import BACKBONE
from dampeml.tuning.campaign import TIME_METRIC, Campaign
from dampeml.tuning.report import comparison, write_report


@pytest.mark.parametrize("network", ["bgo-direction-low", "electron-proton", "stk-hough-coarse"])
def test_a_frozen_backbone_leaves_the_feature_extractor_unchanged_and_trains_the_head(network):
    model = build(network, preset="small", frozen_backbone=True, overrides={})
    frozen = {layer.name for layer in model.layers if layer.weights and BACKBONE.match(layer.name)}
    head = {layer.name for layer in model.layers if layer.trainable_weights}
    print(f"\n{network}: frozen {sorted(frozen)}; trained {sorted(head)}")
    assert frozen and head and not frozen & head
    rng = np.random.default_rng(0)
    x = {}
    for tensor, name in zip(model.inputs, model.input_names, strict=True):
        shape = (16, *tensor.shape[1:])
        x[name] = (
            rng.integers(0, 40, shape).astype(np.uint8) if tensor.dtype == "uint8" else rng.random(shape)
        )
    y = rng.random((16, model.outputs[0].shape[-1])).astype(np.float32)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in model.layers if layer.weights}
    model.fit(x if len(x) > 1 else next(iter(x.values())), y, epochs=2, verbose=0)
    after = {n: model.get_layer(n).get_weights() for n in before}
    moved = {
        n
        for n, ws in before.items()
        if any(not np.array_equal(a, b) for a, b in zip(ws, after[n], strict=True))
    }
    assert not moved & frozen, f"frozen layers changed: {moved & frozen}"
    assert moved & head, "the head did not train"


def _trial(i: int, point: dict, seed: int, metric: float, seconds: float):
    """A finished Tune trial as the report reads it."""
    import json

    return SimpleNamespace(
        trial_id=f"t{i}",
        status="TERMINATED",
        config={"params": {k: json.dumps(v) for k, v in point.items()}, "seed": seed},
        last_result={"test_mae": metric, TIME_METRIC: seconds, "epochs_done": 3},
    )


def test_the_report_gives_each_variant_relative_to_the_baseline(tmp_path):
    space = {"train.init_from": {"grid": [None, "models:/bgo-direction-low@src"]},
             "train.frozen_backbone": {"grid": [False, True]}}  # fmt: skip
    base = {"train.init_from": None, "train.frozen_backbone": False}
    c = Campaign(name="tl", network="bgo-direction-low", dataset="x.yaml", search_space=space,
                 metric="test_mae", repeats=2, baseline=base)  # fmt: skip
    trials = [
        _trial(0, base, 0, 10.0, 100.0),
        _trial(1, base, 1, 12.0, 120.0),
        _trial(
            2,
            {"train.init_from": "models:/bgo-direction-low@src", "train.frozen_backbone": True},
            0,
            8.8,
            44.0,
        ),
        _trial(
            3,
            {"train.init_from": "models:/bgo-direction-low@src", "train.frozen_backbone": True},
            1,
            8.8,
            44.0,
        ),
    ]
    md = write_report(c, comparison(c, trials), tmp_path)[0].read_text()
    print("\n" + md)
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    header = [h.strip() for h in rows[0].strip("|").split("|")]
    cells = {
        tuple(r.strip("|").split("|")[:2]): [x.strip() for x in r.strip("|").split("|")] for r in rows[1:]
    }
    at = {h: i for i, h in enumerate(header)}
    frozen = cells[(" models:/bgo-direction-low@src ", " true ")]
    assert (
        frozen[at["test_mae / baseline"]] == "0.8" and frozen[at["time / baseline"]] == "0.4"
    )  # 8.8/11, 44/110
    baseline = cells[(" null ", " false ")]
    assert baseline[at["test_mae / baseline"]] == "1" and baseline[at["time / baseline"]] == "1"
