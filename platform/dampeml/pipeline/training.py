"""Train, register and promote every network of the chain: the training stage of the demo.

Each catalog network trains on the build of its dataset kind (`DATASET_OF`), with Ray
Train (2 CPU workers, small preset), is registered in MLflow and promoted to the alias
(gated: a version worse than the current holder is not promoted, and the old one stays).
Rerunning skips a network whose alias already points at a version trained on the same
dataset version, so an interrupted demo resumes at the first network not yet promoted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

#: network -> the dataset spec (small variant) it trains on in the demo and the tests.
DATASET_OF: dict[str, str] = {
    "bgo-direction-low": "bgo-direction-low-small",
    "bgo-direction-mid": "bgo-direction-mid-small",
    "bgo-direction-high": "bgo-direction-high-small",
    "stk-hough-coarse": "stk-hough-coarse-small",
    "stk-hough-precise": "stk-hough-precise-small",
    "inelastic-raw-stk": "inelastic-raw-stk-small",
    "inelastic-hough": "inelastic-hough-small",
    "electron-proton": "electron-proton-small",
}


@dataclass(frozen=True)
class Trained:
    network: str
    version: str
    promoted: bool
    note: str


def current_version(name: str, alias: str):
    """The registry's VersionInfo (version, tags) behind `name@alias`, or None when there is none."""
    from dampeml.registry.models import RegistryError, list_versions

    try:
        versions = list_versions(name)
    except RegistryError:
        return None
    return next((v for v in versions if alias in v.aliases), None)


def train_and_promote(
    datasets: dict[str, str],
    storage: Path,
    epochs: int = 6,
    workers: int = 2,
    alias: str = "production",
    console: Console | None = None,
) -> dict[str, Trained]:
    """Train every network of DATASET_OF on `datasets[spec name]`, register, promote to `alias`."""
    from dampeml.datasets.loader import load_manifest
    from dampeml.registry.models import PromotionRefusedError, promote
    from dampeml.training.config import TrainConfig
    from dampeml.training.trainer import train

    console = console or Console(stderr=True)
    out: dict[str, Trained] = {}
    for network, spec_name in DATASET_OF.items():
        uri = datasets[spec_name]
        dataset_version = load_manifest(uri)["dataset_version"]
        current = current_version(network, alias)
        if current and current.metrics.get("dataset_version") == dataset_version:
            out[network] = Trained(network, current.version, True, "reused")
            console.print(f"{network}: @{alias} is v{current.version}, trained on {dataset_version}: reused")
            continue
        cfg = TrainConfig(
            network=network,
            dataset=uri,
            workers=workers,
            epochs=epochs,
            storage=str(storage),
        )
        result = train(cfg)
        version = str(result.model_version)
        try:
            promote(network, version, alias)
            promoted, note = True, "promoted"
        except PromotionRefusedError as exc:
            promoted, note = False, str(exc)
        out[network] = Trained(network, version, promoted, note)
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in result.test.items())
        console.print(f"{network}: v{version} ({metrics}); {note}")
    return out
