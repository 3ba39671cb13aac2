"""Evaluation on MC: the physics figures of merit and the report.

- :mod:`.efficiency`: the paper's Table 2 track efficiency (charge windows of the true track).
- :mod:`.performance`: direction containment vs deposited energy, ROC curves and AUCs.
- :mod:`.report`: every method on the same held-out events -> Markdown + PNGs + metrics.json.
"""
