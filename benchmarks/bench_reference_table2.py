"""The reference zoo's Table 2 on held-out events, through the platform's own commands.

Run: `.venv/bin/python benchmarks/bench_reference_table2.py --workdir ref-eval
[--events 2000] [--variant NAME=CHAIN.yaml ...] [--simulation-version 3]`.

1. `dampeml simulate` writes the held-out events once (kept on reruns): per particle and Table 2
   energy bin, `--events` events E^-1 within the bin (seeds 7101-7105 protons, 7106-7110 helium,
   never used by a dataset), and twice as many electrons of 10 GeV-10 TeV (seed 7111);
2. `dampeml models import-zoo zoo/reference` registers the shipped models in the workdir's
   own MLflow store (skipped when they are there);
3. `dampeml evaluate --alias reference --coarse-below inf` writes the report, once with the
   chain's default settings and once per `--variant` with that chain settings file;
4. the CNN chain's efficiency (85% / 95% windows, binomial error of the 85% figure) per variant
   is printed side by side, with the paper's CNN column; then the default report's standard and
   ideal selections, also around the BGO network's track, and the tracker networks around the shower
   axis (85% window), each beside the paper's Tables 2 and 3.

Every number comes from the reports' `metrics.json`; the reports stay in the workdir.
`--simulation-version` simulates the held-out events with another version of the simulation (the
one before: how the models trained on the current one fare on its physics, or the reverse).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from dampeml.evaluation.efficiency import PAPER_ENERGY_BINS, paper_value

REPO = Path(__file__).resolve().parents[1]
DAMPEML = str(Path(sys.executable).parent / "dampeml")
SEED_BASE = 7100


def held_out_files(workdir: Path, events: int, version: int | None) -> list[tuple[str, list[str]]]:
    """(file, `dampeml simulate` arguments) of every held-out file, seeds in a fixed order."""
    jobs = []
    seed = SEED_BASE
    for particle in ("proton", "helium"):
        for lo, hi in PAPER_ENERGY_BINS:
            seed += 1
            jobs.append((particle, events, lo, hi, seed))
    jobs.append(("electron", 2 * events, 10.0, 1e4, seed + 1))
    out = []
    for particle, n, lo, hi, s in jobs:
        path = workdir / "eval" / f"{particle}-{s}.root"
        args = ["--particle", particle, "--events", str(n), "--energy-min", str(lo), "--energy-max", str(hi)]
        args += ["--simulation-version", str(version)] if version is not None else []
        out.append((str(path), [*args, "--seed", str(s), "--out", str(path)]))
    return out


def run(cmd: list[str], env: dict[str, str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


#: The report's other methods, printed for the default chain beside the paper's Tables 2 and 3.
OTHER_METHODS = ("standard", "ideal", "standard, bgo seed", "ideal, bgo seed", "tracker cnns, axis seed")


def efficiency_cells(
    metrics: dict, method: str = "cnn"
) -> dict[tuple[str, float], dict[float, tuple[float, float]]]:
    """(particle, e_min) -> {containment: (efficiency %, error %)} of one method (the CNN chain)."""
    cells: dict = {}
    for row in metrics["efficiency"]:
        if row["method"] == method:
            key = (row["particle"], row["e_min"])
            cells.setdefault(key, {})[row["containment"]] = (100 * row["efficiency"], 100 * row["error"])
    return cells


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, required=True, help="held-out events, MLflow store and reports")
    ap.add_argument("--events", type=int, default=2000, help="events per particle and energy bin")
    ap.add_argument("--simulation-version", type=int, help="simulate the held-out events with this version")
    ap.add_argument(
        "--variant", action="append", default=[], metavar="NAME=CHAIN.yaml",
        help="also evaluate with this chain settings file (repeatable)",
    )  # fmt: skip
    args = ap.parse_args()
    workdir = args.workdir.resolve()
    (workdir / "eval").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}

    for path, sim_args in held_out_files(workdir, args.events, args.simulation_version):
        if not Path(path).exists():
            run([DAMPEML, "-q", "simulate", *sim_args], env)
    if not (workdir / "mlflow.db").exists():
        run([DAMPEML, "-q", "models", "import-zoo", str(REPO / "zoo" / "reference")], env)

    variants = {"default": None}
    for item in args.variant:
        name, sep, chain = item.partition("=")
        if not sep or not name:
            ap.error(f"--variant {item!r}: write NAME=CHAIN.yaml")
        variants[name] = str(Path(chain).resolve())
    cells = {}
    for name, chain in variants.items():
        out = workdir / f"report-{name}"
        cmd = [DAMPEML, "-q", "evaluate", "--input", str(workdir / "eval" / "*.root"), "--out", str(out)]
        cmd += ["--alias", "reference", "--coarse-below", "inf"] + (["--chain", chain] if chain else [])
        run(cmd, env)
        metrics = json.loads((out / "metrics.json").read_text())
        cells[name] = efficiency_cells(metrics)
        if chain is None:
            others = {m: efficiency_cells(metrics, m) for m in OTHER_METHODS}

    def chain_cells(particle: str, lo: float, hi: float) -> list[str]:
        row = []
        for name in variants:
            c = cells[name].get((particle, lo))
            row.append(f"{c[0.85][0]:.1f} / {c[0.95][0]:.1f} ±{c[0.85][1]:.1f}" if c else "n/a")
        paper = [paper_value(particle, "cnn", lo, hi, k) for k in (0.85, 0.95)]
        return [*row, f"{paper[0]:.1f} / {paper[1]:.1f}"]

    def other_cells(particle: str, lo: float, hi: float) -> list[str]:
        row = []
        for method in OTHER_METHODS:
            c = others[method].get((particle, lo), {}).get(0.85)
            paper = paper_value(particle, method, lo, hi, 0.85)
            ours = f"{c[0]:.1f} ±{c[1]:.1f}" if c else "n/a"
            row.append(f"{ours} / {paper:.1f}" if paper is not None else ours)
        return row

    print_table(
        "CNN chain, track efficiency % (85% / 95% window, +- the 85% figure's binomial error)",
        [*variants, "paper's CNN chain"],
        chain_cells,
    )
    print_table(
        "The default report's other methods, 85% window: ours ±binomial error / the paper's Tables 2-3",
        list(OTHER_METHODS),
        other_cells,
    )


def print_table(title: str, columns: list[str], cells) -> None:
    """A markdown table with a row per particle and Table 2 bin; `cells(particle, lo, hi)` fills a row."""
    print(f"\n{title}")
    print("| particle | E (TeV) | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for particle in ("proton", "helium"):
        for lo, hi in PAPER_ENERGY_BINS:
            row = [particle, f"{lo / 1e3:g}-{hi / 1e3:g}", *cells(particle, lo, hi)]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
