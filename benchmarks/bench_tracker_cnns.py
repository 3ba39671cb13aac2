"""Tracker CNNs trained longer: the Table 2 efficiency the two-step Hough networks reach.

Run: `.venv/bin/python benchmarks/bench_tracker_cnns.py [--train-events 20000] [--epochs 6]`.

The paper's Table 3, option (b): the conventional BGO shower-axis fit seeds the tracker CNNs,
coarse (400 um, +-80 mm) then precise (50 um, +-10 mm), over the whole energy range; hits are
then assigned within 0.3 mm of the precise track and the STK charge is read along it. This
isolates the tracker networks from the calorimeter ones, whose small demo versions limit the
full chain (benchmarks/README.md, the main job).

The networks train in this process with `train_on_batch` (the Ray Train path is tested
elsewhere and, on two cores, is all start-up for runs this short: benchmarks/README.md,
Training). Each is trained on what it will see in the chain:
- coarse: p/He 10 GeV-1 PeV (E^-1), RoI around the shower-axis fit (datasets' roi.source
  'axis-fit'); events whose true track lies outside the image are left out of training only;
- precise: the same events, RoI around the trained coarse network's track (the chained
  training the platform's 'model' RoI source stands for).
Then both run in the chain (`Chain.tracker_track`) on held-out events of the paper's five
Table 2 energy bins, beside the standard reconstruction (standard and ideal selection) on the
same events.

With `--full-chain` the three BGO direction networks are trained too (each on its energy
range's dataset mix, datasets/bgo-direction-<range>-small.yaml) and the whole chain
(`Chain.run`) runs on the same events: once with the paper's switch (coarse step below 1 TeV
deposited, the precise one alone above) and once with the coarse step at every energy
(`--coarse-below inf` of `dampeml reprocess` / `evaluate`). `--coarse-seed bgo` trains the
coarse network around the BGO networks' tracks instead of the axis fit, and `--fine-tune`
goes on training saved networks (`--coarse-model`, `--precise-model`) instead of starting anew.

Printed: per bin the 68% offset of each stage at the first STK plane, the Table 2
efficiencies (ours and the paper's option b and CNN chain), and the loss per epoch. Images
are rendered per batch from the RoI hits (features.hough), as the training input pipeline does.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import awkward as ak
import numpy as np

from dampeml.datasets.spec import load_spec
from dampeml.detector import geometry as geo
from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.evaluation.efficiency import PAPER_ENERGY_BINS, efficiency_table, paper_value
from dampeml.features import COARSE, PRECISE, ZTHR, HoughGeometry, RoiHits, fit_shower_axis, select_roi_hits
from dampeml.features.hough import hough_targets
from dampeml.features.tracks import truth_track
from dampeml.models.catalog import build
from dampeml.reconstruction.chain import (
    BGO_COLUMNS,
    ENERGY_RANGES,
    NETWORK_OF_FIELD,
    TRACK_COLUMNS,
    Chain,
    ChainConfig,
    ChainModels,
    bgo_input,
    hough_input,
)
from dampeml.reconstruction.hits import stk_charge
from dampeml.reconstruction.standard import reconstruct, select_ideal

PARTICLES = ("proton", "helium")
METHOD = "tracker cnns, axis seed"  # the paper's Table 3, option (b)
FULL = "cnn"  # the whole chain (Chain.run), the paper's Table 2 "CNNs reco"
EVERYWHERE = "cnn, coarse everywhere"  # the chain with the coarse step at every energy
REPO = Path(__file__).resolve().parents[1]


def sample(n: int, e_min: float, e_max: float, seed: int) -> list[dict]:
    """Simulated p and He events, one dict of branches per particle."""
    return [
        simulate(SimulationConfig(p, n, e_min, e_max, seed=seed * 10 + i))[0] for i, p in enumerate(PARTICLES)
    ]


def concat_hits(parts: list[RoiHits]) -> RoiHits:
    return RoiHits(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("counts", "layer", "offset", "signal"))
    )


def roi(events: dict, centre: np.ndarray, geometry: HoughGeometry) -> RoiHits:
    return select_roi_hits(events["stk_layer"], events["stk_pos"], events["stk_signal"], centre, geometry)


def tracker_chain(
    coarse=None, precise=None, bgo: dict | None = None, config: ChainConfig | None = None
) -> Chain:
    """A chain around the given networks; untrained small ones elsewhere.

    tracker_track runs only the Hough networks; `run` needs the BGO ones (`bgo`: energy range ->
    model) for a meaningful track; the inelastic and electron networks do not touch the track.
    """
    models = {f: build(n, preset="small", compile=False) for f, n in NETWORK_OF_FIELD.items()}
    models.update(
        hough_coarse=coarse or models["hough_coarse"], hough_precise=precise or models["hough_precise"]
    )
    models.update({f"bgo_{r}": m for r, m in (bgo or {}).items()})
    return Chain(ChainModels(**models), {}, config=config)


def bgo_sample(energy_range: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The energy range's dataset mix (datasets/bgo-direction-<range>-small.yaml: particles,
    energies, spectra) scaled to `n` events: network inputs and true tracks."""
    source = load_spec(REPO / "datasets" / f"bgo-direction-{energy_range}-small.yaml").sources[0]
    total = sum(r.events for r in source.particles.values())
    images, tracks = [], []
    for i, (particle, r) in enumerate(sorted(source.particles.items())):
        cfg = SimulationConfig(
            particle,
            round(n * r.events / total),
            r.energy_min,
            r.energy_max,
            r.spectrum_index,
            seed=seed * 10 + i,
        )
        ev = simulate(cfg)[0]
        images.append(bgo_input(ev["bgo_energy"]))
        tracks.append(truth_track(ev))
    return np.concatenate(images), np.concatenate(tracks).astype(np.float32)


def train_bgo(energy_range: str, n: int, epochs: int, batch: int, seed: int):
    """The small `bgo-direction-<range>` trained in-process, learning rate decaying 10x: (model, losses)."""
    import tensorflow as tf

    from dampeml.models.catalog import get_network
    from dampeml.models.common import tf_keras

    network = f"bgo-direction-{energy_range}"
    x, y = bgo_sample(energy_range, n, seed)
    tf.keras.utils.set_random_seed(seed)
    model = build(network, preset="small")
    lr0 = get_network(network).small_config.learning_rate
    decay = tf_keras().callbacks.LearningRateScheduler(lambda e: lr0 * 0.1 ** (e / max(epochs - 1, 1)))
    history = model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[decay])
    return model, history.history["loss"]


def training_set(events: list[dict], centres: list[np.ndarray], geometry: HoughGeometry):
    """RoI hits, centres and targets of the events whose true track lies inside the image."""
    hits, cen, tgt = [], [], []
    for ev, c in zip(events, centres, strict=True):
        t = hough_targets(truth_track(ev), c, geometry)
        h = roi(ev, c, geometry)
        keep = np.flatnonzero(
            np.isfinite(c).all(axis=1) & (h.counts > 0) & ((t >= 0) & (t <= geometry.n_pixels)).all(axis=1)
        )
        hits.append(h.take(keep))
        cen.append(c[keep])
        tgt.append(t[keep])
    return concat_hits(hits), np.concatenate(cen), np.concatenate(tgt).astype(np.float32)


def train(
    network: str,
    preset: str,
    overrides: dict,
    data,
    geometry: HoughGeometry,
    epochs: int,
    batch: int,
    seed: int,
    model=None,
    lr_scale: float = 1.0,
):
    """Train `network` (or go on training `model`) on (hits, centres, targets), the learning rate
    decaying 10x from the preset's times `lr_scale`: (model, losses)."""
    import tensorflow as tf

    from dampeml.models.catalog import get_network

    hits, centre, target = data
    tf.keras.utils.set_random_seed(seed)
    if model is None:
        model = build(network, preset=preset, overrides=overrides)
    lr0 = lr_scale * get_network(network).config_for(preset, overrides).learning_rate
    steps = epochs * (len(target) // batch)
    rng = np.random.default_rng(seed)
    losses, step = [], 0
    for epoch in range(epochs):
        order = rng.permutation(len(target))
        h, c, t = hits.take(order), centre[order], target[order]
        total, t0 = 0.0, time.perf_counter()
        for s in range(0, len(t) - batch + 1, batch):
            model.optimizer.learning_rate.assign(lr0 * 0.1 ** (step / max(steps - 1, 1)))
            img = hough_input(h.events(s, s + batch), c[s : s + batch], geometry, ZTHR)
            out = model.train_on_batch(img, t[s : s + batch])
            total += float(out[0] if isinstance(out, list) else out)
            step += 1
        n_steps = len(t) // batch
        losses.append(total / max(n_steps, 1))
        print(
            f"  {network} epoch {epoch + 1}/{epochs}: loss {losses[-1]:.1f} px^2 "
            f"({n_steps * batch / (time.perf_counter() - t0):.0f} events/s)",
            flush=True,
        )
    return model, losses


def offset68(track: np.ndarray, truth: np.ndarray) -> float:
    """68% quantile of the larger x/y miss at the first STK plane, mm (no track: a miss)."""
    d = np.max(np.abs(track[:, :2] - truth[:, :2]), axis=1)
    return float(np.quantile(np.where(np.isfinite(d), d, np.inf), 0.68))


def load_model(path: str):
    from dampeml.models.common import tf_keras

    return tf_keras().models.load_model(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-events", type=int, default=20000, help="training events per particle")
    ap.add_argument("--eval-events", type=int, default=1000, help="held-out events per particle and bin")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--preset", default="small", choices=["small", "full"])
    ap.add_argument("--seed", type=int, default=31)
    for stage in ("coarse", "precise"):
        ap.add_argument(
            f"--{stage}-overrides",
            type=json.loads,
            default={},
            help=f"JSON changes to the {stage} network's preset, e.g. '{{\"input_pool\": 2}}'",
        )
        ap.add_argument(
            f"--{stage}-model", help=f"a saved {stage} network (.keras) to use instead of training"
        )
    ap.add_argument(
        "--fine-tune",
        type=float,
        metavar="LR_SCALE",
        help="go on training the loaded --coarse/--precise-model, learning rate = preset's x LR_SCALE",
    )
    ap.add_argument(
        "--train-e-min", type=float, default=10.0, help="lowest training energy, GeV (E^-1 to 1 PeV)"
    )
    ap.add_argument("--save", help="directory to save the trained models in (.keras)")
    ap.add_argument(
        "--full-chain",
        action="store_true",
        help="also train the three BGO direction networks and run the whole chain (Chain.run)",
    )
    ap.add_argument("--bgo-events", type=int, default=60000, help="training events per BGO energy range")
    ap.add_argument("--bgo-epochs", type=int, default=10)
    ap.add_argument(
        "--coarse-seed",
        choices=["axis", "bgo"],
        default="axis",
        help="what the coarse network trains around: the shower-axis fit or (--full-chain) the BGO networks",
    )
    ap.add_argument(
        "--bgo-models", help="directory of saved bgo-direction-<range>.keras to use instead of training"
    )
    args = ap.parse_args()
    if args.coarse_seed == "bgo" and not args.full_chain:
        ap.error("--coarse-seed bgo needs --full-chain (the BGO networks)")
    if args.save:
        os.makedirs(args.save, exist_ok=True)
    print(
        f"machine: {os.cpu_count()} cores; preset {args.preset}; "
        f"{args.train_events} training events per particle; overrides coarse {args.coarse_overrides}, "
        f"precise {args.precise_overrides}"
    )

    t0 = time.perf_counter()
    train_ev = sample(args.train_events, args.train_e_min, 1e6, args.seed)
    axis = [fit_shower_axis(ev["bgo_energy"])[0] for ev in train_ev]
    print(f"simulated the training events in {time.perf_counter() - t0:.0f} s", flush=True)

    trained, losses, minutes = {}, {}, {}
    bgo: dict = {}
    if args.full_chain:
        for r in ENERGY_RANGES:
            name = f"bgo-direction-{r}"
            if args.bgo_models:
                bgo[r] = load_model(os.path.join(args.bgo_models, f"{name}.keras"))
                print(f"{name}: loaded from {args.bgo_models}")
                continue
            t0 = time.perf_counter()
            bgo[r], loss = train_bgo(r, args.bgo_events, args.bgo_epochs, args.batch, args.seed)
            minutes[name], losses[name] = (time.perf_counter() - t0) / 60, loss
            print(
                f"{name}: trained in {minutes[name]:.1f} min, loss {np.round(loss, 1).tolist()}", flush=True
            )
            if args.save:
                bgo[r].save(os.path.join(args.save, f"{name}.keras"))
    seeds = axis
    if args.coarse_seed == "bgo":  # the chain's own upstream
        seeder = tracker_chain(bgo=bgo)
        seeds = [seeder.seed_track(ev) for ev in train_ev]
    for name, geometry in (("coarse", COARSE), ("precise", PRECISE)):
        path = getattr(args, f"{name}_model")
        start = load_model(path) if path else None  # a model saved by an earlier run (--save)
        if path:
            print(f"{name}: loaded {path}")
        if path and args.fine_tune is None:
            trained[name], losses[name] = start, []
            continue
        t0 = time.perf_counter()
        if name == "coarse":
            centres = seeds
        else:  # the precise network learns around the coarse network's tracks
            coarse_only = tracker_chain(trained["coarse"])
            centres = [
                coarse_only.tracker_track(ev, a, precise=False) for ev, a in zip(train_ev, seeds, strict=True)
            ]
        data = training_set(train_ev, centres, geometry)
        print(f"{name}: {len(data[2])} training events (true track inside the image)")
        trained[name], losses[name] = train(
            f"stk-hough-{name}",
            args.preset,
            getattr(args, f"{name}_overrides"),
            data,
            geometry,
            args.epochs,
            args.batch,
            args.seed,
            start,
            args.fine_tune or 1.0,
        )
        minutes[name] = (time.perf_counter() - t0) / 60
    coarse, precise = trained["coarse"], trained["precise"]
    if args.save:
        coarse.save(os.path.join(args.save, "stk-hough-coarse.keras"))
        precise.save(os.path.join(args.save, "stk-hough-precise.keras"))

    chains = {METHOD: tracker_chain(coarse, precise)}
    if bgo:  # the paper's switch (coarse step below 1 TeV deposited) and the coarse step everywhere
        chains[FULL] = tracker_chain(coarse, precise, bgo)
        chains[EVERYWHERE] = tracker_chain(coarse, precise, bgo, ChainConfig(coarse_below_mev=np.inf))
    for c in chains.values():
        c.clock = time.process_time  # CPU seconds of this process: the per-core cost
    chain = chains[METHOD]
    rows, offsets = [], []
    for b_i, (lo, hi) in enumerate(PAPER_ENERGY_BINS):
        for p_i, ev in enumerate(sample(args.eval_events, lo, hi, args.seed + 1000 + b_i)):
            particle = PARTICLES[p_i]
            truth = truth_track(ev)
            seed_track = fit_shower_axis(ev["bgo_energy"])[0]
            t_coarse_ev = chain.tracker_track(ev, seed_track, precise=False)  # for the offsets table
            t_cnn = chain.tracker_track(ev, seed_track)
            std = reconstruct(ev)
            hits = (ev["stk_layer"], ev["stk_pos"], ev["stk_signal"])
            tracks = {
                "true": truth,
                "standard": std.track,
                "ideal": select_ideal(std.candidates, truth),
                METHOD: t_cnn,
            }
            full_offsets = []
            for method in (FULL, EVERYWHERE) if bgo else ():
                out = chains[method].run(ev)
                tracks[method] = np.stack([out[k] for k in TRACK_COLUMNS], axis=1)
                full_offsets.append(offset68(tracks[method], truth))
            if bgo:  # the BGO network's own track, the full chain's seed
                full_offsets.insert(0, offset68(np.stack([out[k] for k in BGO_COLUMNS], axis=1), truth))
            charge = {k: stk_charge(*hits, t)[0] for k, t in tracks.items()}
            in_psd = np.asarray(ev["true_inelastic"]) & (np.asarray(ev["true_interaction_z"]) < geo.Z_TOP)
            rows += efficiency_table(
                particle,
                ev["true_energy"],
                charge.pop("true"),
                charge,
                energy_bins=[(lo, hi)],
                mask=~in_psd,
                peak_mask=~np.asarray(ev["true_inelastic"]),
            )
            n_hits = stk_charge(*hits, t_cnn)[1].n_hits
            offsets.append(
                (
                    particle,
                    lo,
                    hi,
                    offset68(seed_track, truth),
                    offset68(t_coarse_ev, truth),
                    offset68(t_cnn, truth),
                    float(np.mean(n_hits == 0)),
                    float(ak.mean(ak.num(ev["stk_pos"]))),
                    *full_offsets,
                )
            )

    for name, geometry in (("coarse", COARSE), ("precise", PRECISE)):
        if name in minutes:
            print(
                f"\n{name}: trained {minutes[name]:.1f} min, loss per epoch (px^2, "
                f"{1e3 * geometry.pixel_mm:.0f} um): {np.round(losses[name], 1).tolist()}"
            )
    print("\n## Offset of each stage at the first STK plane (68%, larger of x and y), held-out events\n")
    extra = ["BGO network (mm)", "full chain (mm)", "coarse everywhere (mm)"] if bgo else []
    print(
        "| particle | E (TeV) | axis fit (mm) | + coarse (mm) | + precise (mm) "
        "| no hit within 0.3 mm | STK clusters | " + " | ".join(extra) + (" |" if extra else "")
    )
    print("|---" * (7 + len(extra)) + "|")
    for particle, lo, hi, a, c, p, none, n_cl, *full in offsets:
        print(
            f"| {particle} | {lo / 1e3:g}-{hi / 1e3:g} | {a:.2f} | {c:.2f} | {p:.3f} "
            f"| {100 * none:.1f}% | {n_cl:.0f} |" + "".join(f" {o:.3f} |" for o in full)
        )
    print("\n## Track efficiency (%), 85% / 95% windows: ours (paper)\n")
    methods = ("standard", "ideal", METHOD, FULL, *((EVERYWHERE,) if bgo else ()))
    print(
        "| particle | E (TeV) | standard | ideal | tracker CNNs, axis seed (b) | full CNN chain |"
        + (" full chain, coarse step everywhere |" if bgo else "")
    )
    print("|---" * (2 + len(methods)) + "|")
    table = {(r["particle"], r["e_min"], r["method"], r["containment"]): r for r in rows}
    for particle in PARTICLES:
        for lo, hi in PAPER_ENERGY_BINS:
            cells = []
            for method in methods:
                ours = [table.get((particle, lo, method, c)) for c in (0.85, 0.95)]
                paper = [paper_value(particle, method, lo, hi, c) for c in (0.85, 0.95)]
                text = " / ".join(f"{100 * r['efficiency']:.1f}" for r in ours) if ours[0] else ""
                ref = f" ({paper[0]:.1f} / {paper[1]:.1f})" if paper[0] is not None else ""
                cells.append(f"{text}{ref}".strip())
            print(f"| {particle} | {lo / 1e3:g}-{hi / 1e3:g} | " + " | ".join(cells) + " |")
    print("\n## CPU cost of the tracker CNNs in the chain (all held-out events, this process's CPU time)\n")
    images = chain.network_events
    for stage in ("coarse", "precise"):
        n = images[f"hough_{stage}"]
        cost = {
            k: 1e3 * chain.timings.get(f"seeded_{stage}_{k}", 0.0) / max(n, 1) for k in ("render", "network")
        }
        print(
            f"{stage}: {n} images, render {cost['render']:.2f} ms, network {cost['network']:.2f} ms per image"
        )
    n_true = [r["n_true"] for r in rows]
    print(f"\nevents in the true-track window per row: {min(n_true)}-{max(n_true)}")


if __name__ == "__main__":
    main()
