"""Where the shipped files are, found the same way from a wheel as from an editable install.

The repository keeps them at its top level (`datasets/`, `recipes/`, `campaigns/`, `zoo/`);
`dampeml/shipped/` links to each, and the wheel carries them as package data.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

SHIPPED = Path(str(files("dampeml"))) / "shipped"
DATASET_SPECS = SHIPPED / "datasets"
RECIPES = SHIPPED / "recipes"
CAMPAIGNS = SHIPPED / "campaigns"
ZOO = SHIPPED / "zoo"
