"""Shower variables: definitions on hand-made showers, and electrons narrower and earlier than protons."""

from __future__ import annotations

import numpy as np
import pytest

from dampeml import geometry as geo
from dampeml.features.shower_variables import SHOWER_VARIABLE_NAMES, shower_variables
from dampeml.io.root_reader import read_events

RMS = [SHOWER_VARIABLE_NAMES.index(f"rms_{i:02d}") for i in range(14)]
FRAC = [SHOWER_VARIABLE_NAMES.index(f"frac_{i:02d}") for i in range(14)]


def col(v: np.ndarray, name: str) -> np.ndarray:
    return v[:, SHOWER_VARIABLE_NAMES.index(name)]


def test_hand_made_showers():
    e = np.zeros((3, 14, 22), np.float32)
    e[0, 2:, 10] = 200.0  # a line of single bars from layer 2: zero width
    e[0, 5, 10] = 1000.0
    e[0, 0, 3] = 20.0  # a MIP in layer 0: below the start threshold
    e[1, :, 4] = e[1, :, 5] = 100.0  # two equal neighbours: RMS = half a pitch
    v, names = shower_variables(e)  # event 2 is empty
    assert v.shape == (3, len(names)) == (3, 34) and v.dtype == np.float32
    assert not np.isnan(v).any()
    assert np.allclose(v[:2, FRAC].sum(axis=1), 1.0) and v[2, FRAC].sum() == 0
    assert col(v, "total_mev")[0] == pytest.approx(11 * 200 + 1000 + 20)
    assert np.all(v[0, RMS] == 0)
    assert np.allclose(v[1, RMS], geo.BGO_BAR_PITCH / 2)
    assert col(v, "max_layer")[0] == 5 and col(v, "first_layer").tolist() == [2, 0, 14]
    assert col(v, "n_bars").tolist() == [13, 28, 0]
    assert col(v, "frac_13")[1] == pytest.approx(1 / 14)
    assert col(v, "zeta")[1] == pytest.approx((14 * geo.BGO_BAR_PITCH / 2) ** 4 / 8e6 / 14, rel=1e-5)
    assert col(v, "depth")[1] == pytest.approx(6.5)


def test_electrons_are_narrower_and_peak_earlier_than_protons(sample_files):
    v = {
        p: shower_variables(read_events(sample_files[p], branches=["bgo_energy"])["bgo_energy"])[0]
        for p in ("electron", "proton")
    }
    e, p = v["electron"], v["proton"]
    for name, x in (("electron", e), ("proton", p)):
        rms, peak, zeta = np.median(x[:, RMS].sum(axis=1)), np.median(col(x, "max_layer")), col(x, "zeta")
        print(f"\n{name}: summed RMS median {rms:.0f} mm, max_layer median {peak:g}, zeta > 8.5: ", end="")
        print(f"{np.mean(zeta > 8.5):.1%}")
    assert np.median(e[:, RMS].sum(axis=1)) < 0.85 * np.median(p[:, RMS].sum(axis=1))
    assert np.median(col(e, "max_layer")) + 2 <= np.median(col(p, "max_layer"))
    # the high-energy trigger asks for > 10 MIP in a bar of the first layer, so every recorded shower
    # starts there: first_layer tells electrons from protons only among untriggered primaries
    assert np.all(col(e, "first_layer") == 0) and np.all(col(p, "first_layer") == 0)
    # zeta separates: most electrons below DAMPE's ~8.5 cut, most protons above
    assert np.mean(col(e, "zeta") < 8.5) > 0.9 and np.mean(col(p, "zeta") > 8.5) > 0.7
