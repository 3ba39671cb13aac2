"""A picture of sample inputs of a dataset, as the network will see them."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from dampeml.datasets.loader import network_batch  # noqa: E402
from dampeml.storage import Store  # noqa: E402


def sample_picture(uri: str, manifest: dict, out: Path | None = None, n: int = 6) -> Path:
    """Render the first `n` training events' inputs (and targets in the titles) into a PNG."""
    store = Store.open(uri)
    split = next(s for s in ("train", "val", "test") if manifest["splits"][s]["events"])
    first = store.list(split, ".parquet")[0]
    table = pq.read_table(store.path(split, first), filesystem=store.fs).slice(0, n)
    batch = network_batch(table, manifest)
    x = batch["x"] if "x" in batch else batch["x_image"]
    n = len(x)
    channels = x.shape[-1]
    fig, axes = plt.subplots(n, channels, figsize=(3.2 * channels, 2.4 * n), squeeze=False)
    titles = {4: ["x, q<Zthr", "x, q>=Zthr", "y, q<Zthr", "y, q>=Zthr"]}.get(channels, [""])
    for i in range(n):
        for c in range(channels):
            ax = axes[i, c]
            img = np.asarray(x[i, ..., c], dtype=np.float32)
            ax.imshow(img, aspect="auto", origin="upper", cmap="viridis", interpolation="nearest")
            target = np.array2string(np.asarray(batch["y"][i]), precision=1, separator=",")
            ax.set_title(f"{titles[c] if c < len(titles) else ''} y={target}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"{manifest['dataset_version']}: {manifest['kind']} inputs ({split})")
    fig.tight_layout()
    if out is None:  # beside the dataset when it is local, else in the working directory
        out = Path(store.path("samples.png")) if "://" not in store.uri else Path("samples.png")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out
