"""Alignment head vs full training time on the same flight-data selection (issue #7; seed 002: 0.2-0.5).

Run: `.venv/bin/python benchmarks/bench_alignment.py [--model PATH.keras] [--epochs 10]`.

The base network is the small `bgo-direction-mid`: loaded from --model (a saved tf-keras file),
or trained here on --mc-events p/He events of 1 TeV - 100 TeV for --mc-epochs epochs. A
flight-like proton run (1 TeV - 100 TeV, misaligned) gives the clean single-track selection of
dampeml.training.alignment; on the same events, same epochs and batch, the script times the
head-only fit (backbone frozen) and the fit of the whole network, and prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform as stdlib_platform
import time

import numpy as np

import dampeml  # noqa: F401  (tf-keras before TensorFlow)
from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.features.tracks import truth_track
from dampeml.training.alignment import bgo_inputs, held_out, residual_figures, select_clean_tracks, train_head


def base_model(path: str | None, n_events: int, epochs: int):
    import tf_keras as keras

    from dampeml.models.catalog import build

    if path:
        return keras.models.load_model(path, safe_mode=True)
    mc = [
        simulate(SimulationConfig(p, n_events // 2, 1000.0, 1e5, seed=400 + i))[0]
        for i, p in enumerate(("proton", "helium"))
    ]
    model = build("bgo-direction-mid", preset="small")
    model.fit(
        np.concatenate([bgo_inputs(m) for m in mc]),
        np.concatenate([truth_track(m) for m in mc]).astype(np.float32),
        epochs=epochs,
        batch_size=32,
        verbose=0,
    )
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a saved small bgo-direction-mid (.keras); default: train one here")
    ap.add_argument("--mc-events", type=int, default=20000)
    ap.add_argument("--mc-epochs", type=int, default=5)
    ap.add_argument("--flight-events", type=int, default=8000)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    print(
        f"machine: {stdlib_platform.machine()}, {os.cpu_count()} logical CPUs, load {os.getloadavg()[0]:.1f}"
    )
    import tf_keras as keras

    model = base_model(args.model, args.mc_events, args.mc_epochs)
    flight, _ = simulate(SimulationConfig("proton", args.flight_events, 1000.0, 1e5, mode="flight", seed=7))
    clean, track = select_clean_tracks(flight)
    fit = np.flatnonzero(clean & ~held_out(flight["run_id"], flight["event_id"]))
    test = np.flatnonzero(clean & held_out(flight["run_id"], flight["event_id"]))
    x = bgo_inputs(flight)
    rows = []
    for label, trainable in (("head only (backbone frozen)", False), ("whole network", True)):
        fresh = keras.models.clone_model(model)
        fresh.set_weights(model.get_weights())
        t0 = time.perf_counter()
        aligned, _, seconds = train_head(
            fresh, x[fit], track[fit], epochs=args.epochs, trainable_backbone=trainable
        )
        after = residual_figures(aligned.predict(x[test], verbose=0, batch_size=1024), track[test])
        rows.append((label, seconds, time.perf_counter() - t0, after))
    print(f"{len(fit)} clean events fitted, {len(test)} held out, {args.epochs} epochs, batch 32")
    for label, seconds, _, after in rows:
        print(
            f"  {label:28s} fit {seconds:7.1f} s ({seconds / rows[0][1]:.2f}x the head's, "
            f"{rows[0][1] / seconds:.2f} of it); held-out offset {after['offset_mm']:.2f} mm, "
            f"residual 68% {after['residual68_mm']:.2f} mm"
        )


if __name__ == "__main__":
    main()
