"""Simulation throughput, per core: rejection rate, full-simulation rate, bytes per event.

Run: `.venv/bin/python benchmarks/bench_simulation.py [--events 4000]`. Single process,
so every rate is per core. Prints a table and the projected time for the issue's target
(1e8 generated events on one 2-core machine in under an hour).
"""

from __future__ import annotations

import argparse
import os
import platform as stdlib_platform
import tempfile
import time
from pathlib import Path

import numpy as np

from dampeml.detector.generator import GENERATION_CHUNK, generate_primaries
from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.io.root_writer import write_event_file


def rejection_rate(n_chunks: int = 20) -> tuple[float, float]:
    """Candidates generated (and mostly rejected) per second, and the acceptance."""
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    n_acc_total, n_gen_total = 0, 0
    for _ in range(n_chunks):
        prim, n_gen = generate_primaries(rng, 1000, 10.0, 1e6)
        n_acc_total += len(prim)
        n_gen_total += n_gen
    dt = time.perf_counter() - t
    return n_gen_total / dt, n_acc_total / n_gen_total


def simulation_rate(particle: str, e_min: float, e_max: float, n: int) -> tuple[float, float]:
    """Accepted events fully simulated per second, and bytes per event on disk."""
    cfg = SimulationConfig(particle, n, e_min, e_max, seed=3)
    t = time.perf_counter()
    branches, metadata = simulate(cfg)
    dt = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        path = write_event_file(Path(d) / "b.root", branches, metadata)
        size = os.path.getsize(path)
    return n / dt, size / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=4000, help="events per timing point")
    args = ap.parse_args()
    print(
        f"machine: {stdlib_platform.processor() or stdlib_platform.machine()}, "
        f"{os.cpu_count()} logical CPUs, python {stdlib_platform.python_version()}"
    )
    gen_rate, acc = rejection_rate()
    print(
        f"generation+rejection: {gen_rate:,.0f} candidates/s/core (chunk {GENERATION_CHUNK}), "
        f"acceptance {acc:.3%}"
    )
    rows = []
    for particle in ("proton", "helium", "electron"):
        for e in (100.0, 1e4, 1e5):
            if particle == "electron" and e > 5e4:
                continue
            rate, bpe = simulation_rate(particle, e, e * 1.001, args.events)
            rows.append((particle, e, rate, bpe))
    print(f"{'particle':>9} {'E (GeV)':>9} {'events/s/core':>14} {'bytes/event':>12}")
    for particle, e, rate, bpe in rows:
        print(f"{particle:>9} {e:>9.0f} {rate:>14,.0f} {bpe:>12,.0f}")
    # the mission-like mix: proton, 10 GeV - 1 PeV, E^-1
    mix_rate, mix_bpe = simulation_rate("proton", 10.0, 1e6, args.events)
    n_gen = 1e8
    t_2core = (n_gen / gen_rate + n_gen * acc / mix_rate) / 2
    print(f"proton 10 GeV-1 PeV (E^-1): {mix_rate:,.0f} events/s/core, {mix_bpe:,.0f} bytes/event")
    print(
        f"projected: 1e8 generated ({n_gen * acc:,.0f} accepted) on 2 cores: {t_2core / 60:.1f} min "
        f"(target < 60 min: {'met' if t_2core < 3600 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
