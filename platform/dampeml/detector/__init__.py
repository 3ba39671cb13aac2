"""Fast, vectorized DAMPE detector simulation (numpy): generator, propagation, BGO, STK, PSD."""
