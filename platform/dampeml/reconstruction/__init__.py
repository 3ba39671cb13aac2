"""Reconstruction: from an event's detector data to a track, its charge and its classification.

- :mod:`.hits`: hit assignment along a track and the STK charge (shared by the CNN chain,
  the standard reconstruction and the efficiency metric).
"""
