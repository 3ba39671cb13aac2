"""DAMPE geometry and material constants: the one place that knows where things are.

Coordinates are in mm, z grows downward (from the PSD at the top to the BGO at the
bottom), x/y are centred on the detector axis. Numbers are approximations from public
DAMPE sources; each block names its source. Every constant here is also written into
the metadata of every event file (:func:`as_metadata`), so a file says which geometry
made it.

Sources:
  [1] J. Chang et al. (DAMPE), "The DArk Matter Particle Explorer mission",
      Astropart. Phys. 95 (2017) 6.
  [2] Z. Zhang et al., "The calorimeter of DAMPE", NIM A 836 (2016) 98.
  [3] P. Azzarello et al., "The DAMPE silicon-tungsten tracker", NIM A 831 (2016) 378.
  [4] Y. Yu et al., "The plastic scintillator detector for DAMPE", Astropart. Phys. 94 (2017) 1.
  [5] A. Tykhonov et al., Astropart. Phys. 146 (2023).
"""

from __future__ import annotations

import numpy as np

# --- PSD [4]: 2 layers of 41 bars (884 x 28 x 10 mm), staggered sub-layers, ~82 x 82 cm.
PSD_N_LAYERS = 2
PSD_BARS_PER_LAYER = 41
PSD_BAR_THICKNESS = 10.0
PSD_BAR_PITCH = 20.0  # staggered 28 mm bars overlap: effective pitch over the 820 mm face
PSD_HALF_WIDTH = PSD_BARS_PER_LAYER * PSD_BAR_PITCH / 2.0  # 410 mm
#: z of the PSD layer centres. Layer 0 bars run along x (measure y), layer 1 along y (measure x).
PSD_Z = np.array([-324.7, -298.5])
PSD_MEASURES = ("y", "x")
PSD_MIP_MEV = 2.0  # most probable energy of a MIP crossing 1 cm of plastic at normal incidence

# --- STK [3]: 6 x/y double planes = 12 single-sided silicon layers, ~76 x 76 cm.
STK_N_LAYERS = 12
STK_N_HALVES = 2  # readout halves along the strip direction (sign of the other coordinate)
STK_CHANNELS_PER_HALF = 3072  # 8 ladders x 384 read channels across the measured coordinate
STK_READOUT_PITCH = 0.242  # mm (121 um strips, every other strip read)
STK_HALF_WIDTH = STK_CHANNELS_PER_HALF * STK_READOUT_PITCH / 2.0  # 371.7 mm active
STK_RESOLUTION = 0.050  # mm, single-hit resolution at normal incidence
#: z of the 6 plane centres; planes are not evenly spaced [1, 3].
STK_PLANE_Z = np.array([-210.0, -176.0, -143.0, -110.0, -76.5, -42.0])
STK_LAYER_GAP = 3.5  # mm between the x and the y layer of a plane
#: z of each of the 12 layers; layer 2k measures x, 2k+1 measures y (plane k).
STK_LAYER_Z = np.repeat(STK_PLANE_Z, 2) + np.tile([-STK_LAYER_GAP / 2, STK_LAYER_GAP / 2], 6)
STK_LAYER_MEASURES_X = np.arange(STK_N_LAYERS) % 2 == 0
#: Reference planes of the track targets (x, y at the first and last STK plane) [5].
Z_TOP = float(STK_PLANE_Z[0])
Z_BOT = float(STK_PLANE_Z[-1])
#: Tungsten converters (1 mm, 0.286 X0 each) sit after planes 1, 2, 3 [3].
STK_TUNGSTEN_Z = STK_PLANE_Z[:3] + 6.0
STK_TUNGSTEN_X0 = 1.0 / 3.5  # 1 mm of W, X0(W) = 3.5 mm
STK_SILICON_X0 = 0.32 / 93.7 + 0.005  # 320 um Si plus support per layer
STK_HIT_EFFICIENCY = 0.995

# --- BGO [2]: 14 layers x 22 bars (25 x 25 x 600 mm), alternating orientation, ~32 X0.
BGO_N_LAYERS = 14
BGO_N_BARS = 22
BGO_BAR_WIDTH = 25.0
BGO_BAR_GAP = 2.5
BGO_BAR_PITCH = BGO_BAR_WIDTH + BGO_BAR_GAP
BGO_HALF_WIDTH = 301.25
BGO_Z_TOP = 46.0
BGO_Z_BOTTOM = 448.0
#: Layer centres; the pitch includes the carbon-fibre structure between layers.
BGO_LAYER_Z = BGO_Z_TOP + BGO_BAR_WIDTH / 2 + np.arange(BGO_N_LAYERS) * 29.0
#: Even layers measure x (xz view), odd layers measure y (yz view), as the paper's image [5].
BGO_LAYER_MEASURES_X = np.arange(BGO_N_LAYERS) % 2 == 0
BGO_BAR_CENTRES = (np.arange(BGO_N_BARS) - (BGO_N_BARS - 1) / 2) * BGO_BAR_PITCH
BGO_X0 = 11.2  # mm
BGO_LAMBDA_I = 228.0  # mm: 14 x 25 mm = 1.54 lambda_I, so ~21% of protons cross unscathed
BGO_CRITICAL_ENERGY_MEV = 10.1
BGO_MOLIERE_RADIUS = 22.3  # mm
BGO_MIP_MEV = 22.0  # MIP energy in one 25 mm bar at normal incidence
BGO_BAR_SATURATION_MEV = 4.4e6  # ~2e5 MIP dynamic range of the readout [2]

# --- Generation: isotropic flux on a sphere around the instrument [5].
GENERATION_SPHERE_RADIUS = 1200.0  # mm, encloses PSD..BGO (centre at z = 60 mm)
GENERATION_SPHERE_CENTRE_Z = 60.0


def as_metadata() -> dict:
    """All constants of this module as plain JSON-able values, for file metadata."""
    out = {}
    for name, value in globals().items():
        if name.isupper():
            out[name] = value.tolist() if isinstance(value, np.ndarray) else value
    return out
