"""DAMPE's high-energy trigger (simulation version 3): which events the detector records at all.

DAMPE records a high-energy event only when its calorimeter says so: the trigger looks at the
first four BGO layers, each layer firing when one of its bars' signals passes a threshold, and
the high-energy trigger (HET) asks for a large signal in each of the first three layers and a
smaller one in the fourth (as we read DAMPE's trigger papers: about 10 MIPs and 2 MIPs). A shower
that starts late, below the fourth layer, never reaches the analyses: late-starting protons are
those that look most like electrons and those whose track is cleanest, so without the trigger the
simulation keeps events the real detector never records.

The threshold is applied to the bars' read-out energies (after light-yield spread, noise and
saturation), in units of a MIP crossing one bar at normal incidence.
"""

from __future__ import annotations

import numpy as np

from dampeml import geometry as geo

#: HET thresholds (MIPs in one bar) of BGO layers 1-4 from the top
HET_THRESHOLDS_MIP = (10.0, 10.0, 10.0, 2.0)


def high_energy_trigger(bgo_energy: np.ndarray, threshold_scale: float = 1.0) -> np.ndarray:
    """(N,) True where the HET fires: some bar of each of the first layers is above its threshold.

    bgo_energy: (N, 14, 22) read-out energy per bar, MeV. threshold_scale: every threshold times this
    (DAMPE's thresholds drift by about 1% a year; benchmarks/bench_trigger.py measures what that moves).
    """
    e = np.asarray(bgo_energy)
    if e.ndim != 3 or e.shape[1:] != (geo.BGO_N_LAYERS, geo.BGO_N_BARS):
        raise ValueError(f"bgo_energy must be (N, {geo.BGO_N_LAYERS}, {geo.BGO_N_BARS}), got {e.shape}")
    n = len(HET_THRESHOLDS_MIP)
    hottest = e[:, :n, :].max(axis=2)  # (N, 4)
    return (hottest > threshold_scale * np.asarray(HET_THRESHOLDS_MIP) * geo.BGO_MIP_MEV).all(axis=1)
