"""Evaluation: physics figures of merit on MC (efficiency.py: the paper's Table 2 track efficiency)."""
