"""From reconstructed events to physics: event selections, cut-and-count fluxes (seed 001)."""
