"""Network inputs made from event branches: BGO and raw STK images, Hough images, shower variables.

Every function is pure and works on a batch of events (numpy, no per-event or per-hit
Python loops; the Hough rasterizer's loop over lines is compiled with numba), so the same
code serves dataset building, the input pipeline and the reconstruction chain.

- :mod:`.bgo_image`: the 14x22 calorimeter image, bar over hottest bar, 8 bits.
- :mod:`.stk_image`: the 24x3072 raw tracker image rendered from the sparse clusters.
- :mod:`.tracks`: straight tracks given as (x_top, y_top, x_bot, y_bot).
- :mod:`.hough`: RoI hit selection, its compact storage form, the 400x400x4 Hough image
  and the regression targets of the Hough networks.
- :mod:`.shower_variables`: the electron/proton shower variables.
- :mod:`.shower_axis`: the standard energy-weighted BGO shower-axis fit (the baseline) and
  the layer where the shower starts.
"""

from dampeml.features.bgo_image import bgo_image, to_float
from dampeml.features.hough import (
    COARSE,
    PRECISE,
    ZTHR,
    HoughGeometry,
    RoiHits,
    apply_offsets,
    hough_targets,
    render_hough,
    render_hough_reference,
    select_roi_hits,
)
from dampeml.features.shower_axis import fit_shower_axis, shower_start_layer
from dampeml.features.shower_variables import SHOWER_VARIABLE_NAMES, shower_variables
from dampeml.features.stk_image import render_stk_image
from dampeml.features.tracks import cos_theta, truth_track

__all__ = [
    "COARSE",
    "PRECISE",
    "SHOWER_VARIABLE_NAMES",
    "ZTHR",
    "HoughGeometry",
    "RoiHits",
    "apply_offsets",
    "bgo_image",
    "cos_theta",
    "fit_shower_axis",
    "hough_targets",
    "render_hough",
    "render_hough_reference",
    "render_stk_image",
    "select_roi_hits",
    "shower_start_layer",
    "shower_variables",
    "to_float",
    "truth_track",
]
