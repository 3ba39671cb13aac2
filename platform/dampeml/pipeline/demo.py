"""The main job on the embedded default, small: what the README's first command runs.

1. simulate a mixed MC run (p, He, e) and a flight-like run; draw the validation plots;
2. build the small variant of every network's dataset with Ray Data;
3. train the six networks (eight models, small presets) with Ray Train, register them in
   MLflow and promote them to `production` (gated);
4. align the BGO networks to the flight-like run (alignment head, backbone frozen);
5. reprocess the flight-like run with the registered chain (Ray Data, actor pool);
6. evaluate the chain and the standard reconstruction on held-out MC: the physics report.

Every stage reuses what a previous run finished (files, datasets, promoted models, committed
outputs), so an interrupted demo resumes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console

from dampeml.detector.simulation import SIMULATION_VERSION, SimulationConfig, simulate
from dampeml.io.root_reader import EventFileError, inspect_file
from dampeml.io.root_writer import write_event_file
from dampeml.registry.tracking import tracking_uri

#: The shipped specs (the repository is installed editable, as the README does).
SPEC_DIR = Path(__file__).resolve().parents[3] / "datasets"
#: The demo's MC: the paper's energy ranges, shortened so a laptop run takes seconds.
DEMO_SAMPLES = (
    ("proton", 10.0, 1e6, "mc"),
    ("helium", 10.0, 1e6, "mc"),
    ("electron", 1.0, 5e4, "mc"),
    ("proton", 10.0, 1e6, "flight"),
)


#: Held-out MC for the report: other seeds than anything a dataset or the demo's MC used.
EVALUATION_SAMPLES = (
    ("proton", 10.0, 1e6, "mc"),
    ("helium", 10.0, 1e6, "mc"),
    ("electron", 1.0, 5e4, "mc"),
)
EVALUATION_SEED = 9001


def run_demo(
    workdir: Path,
    events_per_particle: int = 2000,
    epochs: int = 6,
    console: Console | None = None,
) -> Path:
    """The whole platform, small, under `workdir`; returns the path of the physics report."""
    from dampeml.detector.validation import make_validation_plots
    from dampeml.pipeline.training import train_and_promote

    console = console or Console(stderr=True)
    workdir = Path(workdir).resolve()
    sim_dir = workdir / "simulation"
    console.rule("1. simulation")
    files = [
        simulate_file(
            sim_dir / f"{particle}_{mode}_s{seed}.root",
            particle,
            events_per_particle,
            e_min,
            e_max,
            mode,
            seed,
            console,
        )
        for seed, (particle, e_min, e_max, mode) in enumerate(DEMO_SAMPLES, start=1)
    ]
    flight = [f for f in files if "_flight_" in f]
    plot_dir = workdir / "plots" / "simulation"
    make_validation_plots(files, plot_dir)
    console.print(f"validation plots in {plot_dir}")

    console.rule("2. datasets (Ray Data)")
    datasets = build_demo_datasets(workdir / "datasets", console)

    console.rule("3. training (Ray Train) and registry (MLflow)")
    train_and_promote(datasets, workdir / "runs", epochs=epochs, console=console)

    console.rule("4. alignment to the flight-like run")
    align_demo(flight, console)

    console.rule("5. reprocessing the flight-like run (Ray Data)")
    reprocess_demo(flight, workdir / "reprocessed", console)

    console.rule("6. physics report on held-out MC")
    held_out = [
        simulate_file(
            sim_dir / "evaluation" / f"{particle}_s{EVALUATION_SEED + i}.root",
            particle,
            events_per_particle,
            e_min,
            e_max,
            mode,
            EVALUATION_SEED + i,
            console,
        )
        for i, (particle, e_min, e_max, mode) in enumerate(EVALUATION_SAMPLES)
    ]
    report = evaluate_demo(held_out, workdir / "report", console)
    console.rule("done")
    console.print(f"physics report: {report}")
    console.print(f"models: `dampeml models list` (MLflow store {tracking_uri()})")
    return report


def simulate_file(
    path: Path, particle: str, n: int, e_min: float, e_max: float, mode: str, seed: int, console: Console
) -> str:
    """One simulated event file, reused when a complete one is already there."""
    if path.exists() and _complete(path, n):
        console.print(f"reusing {path}")
        return str(path)
    cfg = SimulationConfig(particle, n, e_min, e_max, mode=mode, seed=seed)  # type: ignore[arg-type]
    branches, metadata = simulate(cfg)
    write_event_file(path, branches, metadata)
    console.print(f"simulated {n} {mode} {particle} events -> {path} ({metadata['n_generated']} generated)")
    return str(path)


def align_demo(flight_files: list[str], console: Console) -> None:
    """Alignment head of every BGO network on the flight-like run, where it has enough clean events."""
    from dampeml.models.catalog import aligned_name
    from dampeml.pipeline.training import DATASET_OF, current_version
    from dampeml.registry.models import version_of
    from dampeml.training.alignment import AlignmentError, align_registered

    for network in (n for n in DATASET_OF if n.startswith("bgo-direction")):
        base = f"{network} v{version_of(network, 'production')}"
        done = current_version(aligned_name(network), "production")
        if done and done.metrics.get("base_model") == base:
            console.print(f"{network}: {aligned_name(network)} v{done.version} aligns {base}: reused")
            continue
        try:
            result, version, _ = align_registered(network, flight_files)
        except AlignmentError as exc:
            console.print(f"{network}: not aligned ({exc})")
            continue
        before, after = result.before["residual68_mm"], result.after["residual68_mm"]
        what = f"registered {network}-aligned v{version}" if version else "not registered (no gain)"
        console.print(
            f"{network}: held-out BGO-STK residual (68%) {before:.2f} -> {after:.2f} mm "
            f"on {result.n_held_out} events; {what}"
        )


def reprocess_demo(flight_files: list[str], out: Path, console: Console) -> None:
    from dampeml.inference.predictor import ReprocessError
    from dampeml.inference.reprocess import ReprocessConfig, reprocess

    cfg = ReprocessConfig(inputs=flight_files, out=str(out), actors=2)
    try:
        result = reprocess(cfg)
    except ReprocessError as exc:  # outputs of models that are no longer @production: redo them
        console.print(f"replacing stale outputs: {exc}")
        result = reprocess(replace(cfg, overwrite=True))
    totals = result.summary["totals"]
    console.print(f"reprocessed {totals['written']} events ({totals['quarantined']} quarantined) -> {out}")


def evaluate_demo(files: list[str], out: Path, console: Console) -> Path:
    from dampeml.evaluation.report import collect, write_report
    from dampeml.reconstruction.chain import Chain

    chain = Chain.from_registry(alias="production", flight=False)
    sample = collect(files, chain)
    return write_report(sample, out)


def build_demo_datasets(root: Path, console: Console) -> dict[str, str]:
    """Every shipped `*-small` spec whose RoI needs no registered model; resumes finished ones."""
    from dampeml.datasets.build import build_dataset
    from dampeml.datasets.spec import load_spec
    from dampeml.runtime import init_ray

    init_ray(log_to_driver=False)  # the demo prints its own summary; failures still raise here
    out = {}
    for spec_path in sorted(SPEC_DIR.glob("*-small.yaml")):
        spec = load_spec(spec_path)
        uri = str(root / spec.name)
        _drop_if_other_physics(Path(uri), console)
        summary = build_dataset(spec, uri, resume=True)
        m = summary.manifest
        console.print(
            f"dataset {m['dataset_version']}: {m['accounting']['written']} events "
            f"({m['bytes_per_event']:.0f} B/event) -> {uri}"
        )
        out[spec.name] = uri
    return out


def _drop_if_other_physics(path: Path, console: Console) -> None:
    """The demo's own scratch dataset, started under another simulation version: build it anew."""
    import shutil

    from dampeml.datasets.build import other_physics

    version = other_physics(str(path))
    if version is not None:
        console.print(f"rebuilding {path.name}: made with simulation version {version}")
        shutil.rmtree(path)


def _complete(path: Path, n_events: int) -> bool:
    """A finished file of this many events, made with today's simulation physics."""
    try:
        info = inspect_file(path)
    except EventFileError:
        return False
    return info.n_events == n_events and info.metadata.get("simulation_version") == SIMULATION_VERSION
