"""Where an electron's shower starts: the simulation's first BGO layer against particle-by-particle cascades.

DAMPE's trigger asks for 10 MIPs in a bar of the first layer, so the low side of that layer's energy
decides which electrons are recorded. The simulation takes it from GFlash's profile, fitted to whole
showers; `evaluation.em_cascade` follows the particles with textbook cross sections, converting photons
at once (the asymptotic pair cross section) or late (`slow_pairs`): two bounds, nothing fitted.
"""

from __future__ import annotations

import numpy as np
import pytest

from dampeml import geometry as geo
from dampeml.evaluation.em_cascade import first_layer_deposits, shower_deposits
from tests.conftest import simulated

QUANTILES = (5, 16, 50)


@pytest.mark.parametrize("slow_pairs", [False, True])
def test_the_cascade_conserves_energy_and_peaks_near_rossis_maximum(slow_pairs):
    """Every MeV of a 1 GeV electron ends in 200 X0 of BGO, and the mean profile peaks within 1 X0 of
    t_max = ln(E / E_c) - 0.5 (Rossi's approximation B as the PDG gives it)."""
    rng = np.random.default_rng(1)
    edges = np.linspace(0.0, 200.0, 401)
    profiles = np.array([shower_deposits(rng, 1000.0, 0.0, edges, slow_pairs) for _ in range(300)])
    peak = edges[np.argmax(profiles.mean(axis=0))] + 0.25
    expected = np.log(1000.0 / geo.BGO_CRITICAL_ENERGY_MEV) - 0.5
    kept = profiles.sum(axis=1)
    print(f"\nslow pairs {slow_pairs}: kept {kept.mean():.4f} MeV of 1000; peak at {peak:.2f} X0 (Rossi "
          f"{expected:.2f})")  # fmt: skip
    assert kept == pytest.approx(1000.0, rel=1e-9)
    assert abs(peak - expected) < 1.0


def test_the_first_layer_of_electrons_lies_between_the_cascades_since_version_4():
    """The 5 / 16 / 50% quantiles of the first layer's energy of 5 and 20 GeV electrons lie between
    those of the cascade that converts photons late and the one that converts them at once (5% of
    either's value allowed for their 1,500 showers). Version 3's profiles barely fluctuated: its 5%
    quantile sat 1.4-1.6x above even the early cascade's, so it recorded every electron."""
    rng = np.random.default_rng(3)
    inside = {}
    for energy in (5.0, 20.0):
        low, high = 0.9999 * energy, 1.0001 * energy
        events = {v: simulated("electron", 1500, low, high, seed=5, version=v, trigger=False) for v in (3, 4)}
        cos_theta = np.cos(np.asarray(events[4]["true_theta"]))  # the same directions in both versions
        late, early = (
            np.percentile(
                first_layer_deposits(rng, energy * 1000.0, cos_theta, slow) / geo.BGO_MIP_MEV, QUANTILES
            )
            for slow in (True, False)
        )
        for version, branches in events.items():
            layer = np.percentile(
                np.asarray(branches["bgo_energy"])[:, 0, :].sum(axis=1) / geo.BGO_MIP_MEV, QUANTILES
            )
            inside[energy, version] = bool(np.all((layer > 0.95 * late) & (layer < 1.05 * early)))
            print(f"\n{energy:g} GeV, {QUANTILES}% quantiles (MIPs): late cascade {np.round(late, 1)}, "
                  f"version {version} {np.round(layer, 1)}, early cascade {np.round(early, 1)}")  # fmt: skip
    assert inside[5.0, 4] and inside[20.0, 4]
    assert not inside[5.0, 3] and not inside[20.0, 3], "version 3 should fail: its onset did not fluctuate"
