"""The electron flux's closure at full size, with the platform's own commands (issue #22).

1. `dampeml simulate-mission`: the shipped mission (electrons and protons at DAMPE's fluxes) for
   `--live-time` seconds, on the MC detector (`--detector nominal`: a closure of the analysis alone)
   or with each run's drawn flight conditions (`--detector flight`);
2. `dampeml simulate`: electron and proton MC with seeds of their own;
3. `dampeml flux` with zeta and the standard energy, and with each `--networks` setting (a score and an
   energy, e.g. `combined:bgo-energy`), each against the injected spectrum (`--injected`);
4. `dampeml flux-compare`: the scores and energies side by side on the same MC.
Prints each flux's pulls and chi2 and each step's wall time. The networks are those registered
under `--models-alias` in the MLflow store of MLFLOW_TRACKING_URI (train them with
`dampeml pipeline run recipes/electron-flux.yaml --profile reference`).

    MLFLOW_TRACKING_URI=sqlite:////abs/mlflow.db .venv/bin/python benchmarks/bench_flux_closure.py \\
        --workdir flux-closure --live-time 200000 --electrons 50000 --protons 300000 \\
        --networks combined:bgo-energy electron-proton-cnn:standard --models-alias reference
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
DAMPEML = [sys.executable, "-m", "dampeml.cli.main"]
#: 99% quantiles of chi2 by degrees of freedom
CHI2_99 = {3: 11.34, 4: 13.28, 5: 15.09, 6: 16.81, 8: 20.09}


def run(step: str, args: list[str], timings: dict[str, float]) -> None:
    t0 = time.perf_counter()
    done = subprocess.run([*DAMPEML, *args], capture_output=True, text=True)
    timings[step] = time.perf_counter() - t0
    if done.returncode:
        sys.exit(f"{step} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print(f"{step}: {timings[step]:.0f} s", flush=True)


def summary(folder: Path) -> str:
    rows = json.loads((folder / "flux.json").read_text())["points"]
    pulls = np.array([(r["flux"] - r["injected"]) / r["flux_err"] for r in rows])
    chi2 = float(np.sum(pulls**2))
    ratio = ", ".join(f"{r['flux'] / r['injected']:.3f}+-{r['flux_err'] / r['injected']:.3f}" for r in rows)
    background = ", ".join(f"{r['background']:.4f}" for r in rows)
    return (f"flux / injected {ratio}; pulls {np.round(pulls, 2).tolist()}; chi2 {chi2:.2f} for {len(rows)} "
            f"bins (99% limit {CHI2_99.get(len(rows), float('nan'))}); background {background}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("flux-closure"))
    ap.add_argument("--live-time", type=float, default=200000.0, help="seconds of flight-like data")
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--detector", choices=["nominal", "flight"], default="nominal")
    ap.add_argument("--electrons", type=int, default=50000, help="electron MC events (20 GeV-2 TeV, E^-1)")
    ap.add_argument("--protons", type=int, default=300000, help="proton MC events (50 GeV-5 TeV, E^-1)")
    ap.add_argument("--bins", default="40:1000:6")
    ap.add_argument("--networks", nargs="*", default=["combined:bgo-energy"], help="SCORE:ENERGY settings")
    ap.add_argument("--models-alias", default="production")
    args = ap.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    timings: dict[str, float] = {}

    mission = yaml.safe_load((REPO / "datasets" / "missions" / "electrons-protons.yaml").read_text())
    mission |= {"name": "closure", "live_time_s": args.live_time, "runs": args.runs, "seed": 21,
                "detector": args.detector}  # fmt: skip
    (work / "mission.yaml").write_text(yaml.safe_dump(mission))
    if not (work / "mission" / "mission.json").exists():
        command = ["simulate-mission", str(work / "mission.yaml"), "--out", str(work / "mission")]
        run("simulate-mission", command, timings)
    mc = {"electron": (args.electrons, 20, 2000, 31), "proton": (args.protons, 50, 5000, 32)}
    for particle, (n, lo, hi, seed) in mc.items():
        path = work / f"{particle}.root"
        if not path.exists():
            run(f"simulate {particle}", ["simulate", "--particle", particle, "--events", str(n),
                "--energy-min", str(lo), "--energy-max", str(hi), "--seed", str(seed), "--out", str(path)],
                timings)  # fmt: skip
    common = ["--flight", str(work / "mission" / "run_*.root"), "--electron-mc", str(work / "electron.root"),
              "--proton-mc", str(work / "proton.root"), "--bins", args.bins,
              "--injected", str(work / "mission"), "--models-alias", args.models_alias]  # fmt: skip
    settings = ["zeta:standard", *args.networks]
    for setting in settings:
        score, energy = setting.split(":")
        run(f"flux {setting}", ["flux", *common, "--score", score, "--energy", energy,
                                "--out", str(work / f"flux-{score}-{energy}")], timings)  # fmt: skip
    if args.networks:
        run("flux-compare", ["flux-compare", "--electron-mc", str(work / "electron.root"), "--proton-mc",
                             str(work / "proton.root"), "--bins", args.bins, "--out", str(work / "compare"),
                             "--models-alias", args.models_alias], timings)  # fmt: skip
    print(f"\n{args.live_time:g} s of flight-like data ({args.detector} detector), {args.electrons} electron "
          f"and {args.protons} proton MC events, bins {args.bins} GeV")  # fmt: skip
    for setting in settings:
        score, energy = setting.split(":")
        print(f"- {setting}: {summary(work / f'flux-{score}-{energy}')}")
    if args.networks:
        print((work / "compare" / "compare.md").read_text())


if __name__ == "__main__":
    main()
