"""The comparison at the end of a campaign: the metric per point of the search space, with the
mean and spread over the repeats (seeds), as a table (console, Markdown, CSV) and a plot.

The spread is the sample standard deviation over seeds (ddof=1; 0 with one seed): it is what a
difference between two points must beat before it means anything. With a `baseline` point, two
more columns give each point's mean metric and mean training time (`train_seconds`: the epochs,
validation and checkpoints, not Ray's start-up) over the baseline's: the transfer-learning table.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table

from dampeml.tuning.campaign import TIME_METRIC, Campaign, decode_params


@dataclass
class Group:
    """One point of the search space (every key but the seed) and its trials."""

    point: dict  # search key -> value
    values: list[float] = field(default_factory=list)  # the campaign metric, one per finished seed
    seeds: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    compare: dict[str, list[float]] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)  # training time of each finished seed
    failed: int = 0

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0

    def label(self) -> str:
        return ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in self.point.items())


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, str) and v.endswith((".yaml", ".yml")):
        return Path(v).stem
    if isinstance(v, dict):  # a set of model fields
        return ", ".join(f"{k}={_short(x)}" for k, x in v.items()) or "(preset)"
    return json.dumps(v) if not isinstance(v, str) else v


def trial_rows(c: Campaign, trials) -> list[dict]:
    """One plain row per Tune trial: id, status, point, seed, metrics of its last result."""

    rows = []
    for t in trials:
        result = t.last_result or {}
        rows.append(
            {
                "trial_id": t.trial_id,
                "status": t.status,
                "point": decode_params(c, t.config["params"]),
                "seed": int(t.config["seed"]),
                "epochs": int(result.get("epochs_done", result.get("epoch", 0)) or 0),
                "metrics": {k: v for k, v in result.items() if isinstance(v, int | float)},
            }
        )
    return rows


def comparison(c: Campaign, trials) -> list[Group]:
    """Trials grouped by search point (seeds pooled), in search-space order."""
    groups: dict[str, Group] = {}
    for row in trial_rows(c, trials):
        key = json.dumps(row["point"], sort_keys=True)
        g = groups.setdefault(key, Group(point=row["point"], compare={m: [] for m in c.compare}))
        value = row["metrics"].get(c.metric)
        if row["status"] != "TERMINATED" or value is None:
            g.failed += 1
            continue
        g.values.append(float(value))
        g.seeds.append(row["seed"])
        g.epochs.append(row["epochs"])
        g.seconds.append(float(row["metrics"].get(TIME_METRIC, float("nan"))))
        for m in c.compare:
            g.compare[m].append(float(row["metrics"].get(m, float("nan"))))
    return sorted(groups.values(), key=lambda g: _order(c, g.point))


def _order(c: Campaign, point: dict) -> tuple:
    """Search-space order: a grid/choice value by its position in the file, a sampled value by itself."""
    key = []
    for k, s in c.search_space.items():
        v = point.get(k)
        key.append(s.values.index(v) if s.values is not None and v in s.values else v)
    return tuple(key)


def _header(c: Campaign) -> list[str]:
    relative = [f"{c.metric} / baseline", "time / baseline"] if c.baseline else []
    return [*c.search_space, "seeds", "epochs", f"{c.metric} mean", "spread (std)", "per seed", *relative,
            *c.compare]  # fmt: skip


def baseline_group(c: Campaign, groups: list[Group]) -> Group | None:
    """The group of the campaign's baseline point (None: no baseline, or it did not finish)."""
    found = [g for g in groups if c.baseline and g.point == c.baseline and g.values]
    return found[0] if found else None


def _relative(c: Campaign, g: Group, base: Group | None) -> list[str]:
    """The metric and training-time ratios to the baseline (empty without a baseline)."""
    if not c.baseline:
        return []
    if base is None or not g.values:
        return ["n/a", "n/a"]
    return [f"{g.mean / base.mean:.3g}", f"{np.nanmean(g.seconds) / np.nanmean(base.seconds):.3g}"]


def _cells(c: Campaign, g: Group, base: Group | None = None) -> list[str]:
    return [
        *(_short(g.point.get(k)) for k in c.search_space),
        f"{len(g.values)}" + (f" (+{g.failed} failed)" if g.failed else ""),
        ",".join(str(e) for e in sorted(set(g.epochs))),
        f"{g.mean:.5g}",
        f"{g.std:.2g}",
        " ".join(f"{v:.4g}" for v in g.values),
        *_relative(c, g, base),
        *(f"{np.nanmean(g.compare[m]):.4g}" if g.compare[m] else "nan" for m in c.compare),
    ]


def best_group(c: Campaign, groups: list[Group]) -> Group | None:
    done = [g for g in groups if g.values]
    return (min if c.mode == "min" else max)(done, key=lambda g: g.mean) if done else None


def rich_table(c: Campaign, groups: list[Group]):

    best, base = best_group(c, groups), baseline_group(c, groups)
    t = Table(title=f"campaign {c.name}: {c.network}, {c.metric} ({c.mode}), {c.repeats} seed(s) per point")
    for h in _header(c):
        t.add_column(h, justify="right")
    for g in groups:
        t.add_row(*_cells(c, g, base), style="bold green" if g is best else None)
    return t


def _plot(c: Campaign, groups: list[Group], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(groups) + 2), 3.8))
    x = np.arange(len(groups))
    for i, g in enumerate(groups):
        ax.scatter(np.full(len(g.values), i), g.values, s=14, color="0.5", zorder=2)
    ax.errorbar(
        x,
        [g.mean for g in groups],
        yerr=[g.std for g in groups],
        fmt="o",
        color="C0",
        capsize=4,
        zorder=3,
        label="mean +- std over seeds",
    )
    ax.set_xticks(x, [g.label() for g in groups], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(c.metric)
    ax.set_title(f"{c.name} ({c.network})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(c: Campaign, groups: list[Group], out_dir: Path) -> list[Path]:
    """comparison.md, comparison.csv and comparison.png in `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    header = _header(c)
    base = baseline_group(c, groups)
    rows = [_cells(c, g, base) for g in groups]
    md = out_dir / "comparison.md"
    lines = [
        f"# {c.name}: {c.network}",
        "",
        c.description.strip(),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    md.write_text("\n".join(lines) + "\n")
    path_csv = out_dir / "comparison.csv"
    with path_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*c.search_space, "seed", "epochs", c.metric, TIME_METRIC, *c.compare])
        for g in groups:
            for i, v in enumerate(g.values):
                w.writerow(
                    [
                        *(json.dumps(g.point.get(k)) for k in c.search_space),
                        g.seeds[i],
                        g.epochs[i],
                        v,
                        g.seconds[i],
                        *(g.compare[m][i] for m in c.compare),
                    ]
                )
    png = out_dir / "comparison.png"
    _plot(c, groups, png)
    return [md, path_csv, png]
