"""Explanation maps: a trained network's map falls on the pixels of the true track, an untrained one's
does not; attention maps and the `dampeml explain` command."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from dampeml import geometry as geo
from dampeml.cli.main import app
from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.evaluation.explain import draw, event_inputs, explain_maps, share_within
from dampeml.features.hough import COARSE, hough_targets, select_roi_hits
from dampeml.models.architecture import Architecture
from dampeml.paths import ZOO
from dampeml.reconstruction.chain import hough_input
from dampeml.registry.zoo import load_zoo_model
from tests.conftest import make_file

REFERENCE = ZOO / "reference"


def _bgo_track_pixels(events: dict, half_width: int = 1) -> np.ndarray:
    """(N, 14, 22) mask: per BGO layer (row), the bar the true track crosses there +- half_width."""
    n = len(events["true_x_top"])
    frac = (geo.BGO_LAYER_Z - geo.Z_TOP) / (geo.Z_BOT - geo.Z_TOP)
    mask = np.zeros((n, len(frac), len(geo.BGO_BAR_CENTRES)))
    for row, f in enumerate(frac):
        view = "x" if geo.BGO_LAYER_MEASURES_X[row] else "y"
        u = events[f"true_{view}_top"] + (events[f"true_{view}_bot"] - events[f"true_{view}_top"]) * f
        bar = np.abs(u[:, None] - geo.BGO_BAR_CENTRES[None]).argmin(axis=1)
        for d in range(-half_width, half_width + 1):
            mask[np.arange(n), row, np.clip(bar + d, 0, mask.shape[2] - 1)] = 1
    return mask


def _compare(label: str, trained, untrained, inputs, mask) -> tuple[float, float, float]:
    """Median share of each network's map on `mask`, and the mask's share of the pixels; printed."""
    a = float(np.median(share_within(explain_maps(trained, inputs).gradient, mask)))
    b = float(np.median(share_within(explain_maps(untrained, inputs).gradient, mask)))
    area = float(mask.mean())
    print(f"\n{label}: median share of the map on the true track {a:.1%} (trained), {b:.1%} (untrained); "
          f"the track's share of the pixels {area:.1%}")  # fmt: skip
    return a, b, area


@pytest.mark.timeout(300)
def test_the_trained_bgo_networks_map_falls_on_the_tracks_bars():
    """The reference BGO network: LayerCAM within one bar of the true track in each layer."""
    events, _ = simulate(SimulationConfig("proton", 300, 100.0, 1000.0, seed=5))
    trained = load_zoo_model(REFERENCE, "bgo-direction-low")
    untrained = Architecture("bgo-direction-low").build()
    a, b, area = _compare("bgo-direction-low", trained, untrained, event_inputs("bgo-direction-low", events),
                          _bgo_track_pixels(events))  # fmt: skip
    assert a > 0.6 and a > 3 * area and a > b + 0.3  # measured 94%, 20%, 13.5%


@pytest.mark.timeout(300)
def test_the_trained_hough_networks_map_falls_near_the_true_tracks_point():
    """The reference coarse Hough network: LayerCAM within 16 pixels of the point where the true track's
    lines meet (one per projection), on images around a 4 mm-smeared truth (as the chain's BGO seed)."""
    events, _ = simulate(SimulationConfig("proton", 60, 100.0, 1000.0, seed=7))
    truth = np.stack([events[f"true_{k}"] for k in ("x_top", "y_top", "x_bot", "y_bot")], axis=1)
    seed = truth + np.random.default_rng(0).normal(0.0, 4.0, truth.shape)
    hits = select_roi_hits(events["stk_layer"], events["stk_pos"], events["stk_signal"], seed, COARSE)
    images = hough_input(hits, seed, COARSE, 2**0.5)
    point = hough_targets(truth, seed, COARSE)  # (x_top, y_top, x_bot, y_bot) in pixels
    i, j = np.mgrid[0 : COARSE.n_pixels, 0 : COARSE.n_pixels] + 0.5
    mask = np.zeros(images.shape[:3])
    for top, bot in ((0, 2), (1, 3)):  # the x and the y projection's point
        mask = np.maximum(mask, np.hypot(i - point[:, top, None, None], j - point[:, bot, None, None]) <= 16)
    trained = load_zoo_model(REFERENCE, "stk-hough-coarse")
    untrained = Architecture("stk-hough-coarse").build()
    a, b, area = _compare("stk-hough-coarse", trained, untrained, images, mask)
    assert a > 5 * area and a > 2 * b  # measured 18%, 4%, 0.8%


def test_attention_maps_are_returned_and_drawn(tmp_path):
    """A network with spatial attention at two places: one map each, at the input's size, summing to 1."""
    events, _ = simulate(SimulationConfig("electron", 4, 10.0, 100.0, seed=2))
    arch = Architecture("bgo-direction-low", "small", {"attention_at": [0, 2], "attention": "spatial"})
    result = explain_maps(arch.build(), event_inputs("bgo-direction-low", events))
    assert sorted(result.attention) == ["conv_attention_0_spatial_map", "conv_attention_2_spatial_map"]
    for m in (result.gradient, *result.attention.values()):
        assert m.shape == (4, 14, 22)
        np.testing.assert_allclose(m.reshape(4, -1).sum(axis=1), 1.0, rtol=1e-5)
    png = draw(result, tmp_path / "maps.png")
    assert png.stat().st_size > 10_000


def test_explain_command_writes_the_maps_and_refuses_what_it_cannot_explain(tmp_path):
    events = make_file(tmp_path / "p.root", "proton", 12, 100.0, 1000.0, seed=3)
    out = tmp_path / "maps"

    def run(*args: str):
        r = CliRunner().invoke(app, ["explain", *args])
        return r.exit_code, " ".join(r.output.split())

    code, text = run("zoo:bgo-direction-low", "--events", str(events), "--out", str(out), "--n", "3")
    assert code == 0, text
    maps = np.load(out / "explain-bgo-direction-low.npz")
    assert maps["gradient"].shape == (3, 14, 22) and maps["outputs"].shape == (3, 4)
    assert (out / "explain-bgo-direction-low.png").stat().st_size > 10_000
    code, text = run("zoo:stk-hough-coarse", "--events", str(events), "--out", str(out))
    assert code == 2 and "--dataset URI" in text
    code, text = run("zoo:bgo-direction-huge", "--events", str(events), "--out", str(out))
    assert code == 2 and "no model 'bgo-direction-huge'" in text and "bgo-direction-low" in text
    code, text = run("zoo:bgo-direction-low", "--out", str(out))
    assert code == 2 and "--events FILE or --dataset URI" in text
    code, text = run("zoo:bgo-direction-low", "--events", str(events), "--out", str(out), "--method", "magic")
    assert code == 2 and "unknown method 'magic'" in text
