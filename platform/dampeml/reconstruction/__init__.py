"""Reconstruction: from an event's detector data to a track, its charge and its classification.

- :mod:`.hits`: hit assignment along a track and the STK charge (shared by the CNN chain,
  the standard reconstruction and the efficiency metric).
- :mod:`.chain`: the CNN chain of the paper (BGO -> Hough -> hits/charge -> inelastic -> e/p),
  models loaded by registry alias.
- :mod:`.onnx_export`: any registered network to ONNX, with a numerical parity check.
- :mod:`.standard`: the standard track reconstruction (baseline) with its standard and ideal
  selections.
- :mod:`.psd_charge`: PSD charge along a track and the charge-consistency cut (baseline for
  inelastic interactions).
"""
