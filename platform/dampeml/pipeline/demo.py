"""The main job on the embedded default, small: what the README's first command runs.

Today: simulate a mixed MC run (p, He, e) and a flight-like run, draw the simulation's
validation plots, and build the small variant of every network's dataset with Ray Data
(the simulation feeds the pipeline directly). Later stages (training, registry,
reprocessing, report) extend this same function.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.io.root_reader import EventFileError, inspect_file
from dampeml.io.root_writer import write_event_file

#: The shipped specs (the repository is installed editable, as the README does).
SPEC_DIR = Path(__file__).resolve().parents[3] / "datasets"
#: The demo's MC: the paper's energy ranges, shortened so a laptop run takes seconds.
DEMO_SAMPLES = (
    ("proton", 10.0, 1e6, "mc"),
    ("helium", 10.0, 1e6, "mc"),
    ("electron", 1.0, 5e4, "mc"),
    ("proton", 10.0, 1e6, "flight"),
)


def run_demo(workdir: Path, events_per_particle: int = 2000, console: Console | None = None) -> Path:
    """Simulate the demo samples (reusing complete files from an earlier run) and plot them."""
    from dampeml.detector.validation import make_validation_plots

    console = console or Console(stderr=True)
    sim_dir = Path(workdir) / "simulation"
    files = []
    for seed, (particle, e_min, e_max, mode) in enumerate(DEMO_SAMPLES, start=1):
        path = sim_dir / f"{particle}_{mode}_s{seed}.root"
        if path.exists() and _complete(path, events_per_particle):
            console.print(f"reusing {path}")
        else:
            cfg = SimulationConfig(particle, events_per_particle, e_min, e_max, mode=mode, seed=seed)
            branches, metadata = simulate(cfg)
            write_event_file(path, branches, metadata)
            console.print(
                f"simulated {events_per_particle} {mode} {particle} events -> {path} "
                f"({metadata['n_generated']} generated)"
            )
        files.append(str(path))
    plot_dir = Path(workdir) / "plots" / "simulation"
    make_validation_plots(files, plot_dir)
    console.print(f"validation plots in {plot_dir}")
    build_demo_datasets(Path(workdir) / "datasets", console)
    return plot_dir


def build_demo_datasets(root: Path, console: Console) -> dict[str, str]:
    """Every shipped `*-small` spec whose RoI needs no registered model; resumes finished ones."""
    from dampeml.datasets.build import build_dataset
    from dampeml.datasets.spec import load_spec
    from dampeml.runtime import init_ray

    init_ray()
    out = {}
    for spec_path in sorted(SPEC_DIR.glob("*-small.yaml")):
        spec = load_spec(spec_path)
        uri = str(root / spec.name)
        summary = build_dataset(spec, uri, resume=True)
        m = summary.manifest
        console.print(
            f"dataset {m['dataset_version']}: {m['accounting']['written']} events "
            f"({m['bytes_per_event']:.0f} B/event) -> {uri}"
        )
        out[spec.name] = uri
    return out


def _complete(path: Path, n_events: int) -> bool:
    try:
        return inspect_file(path).n_events == n_events
    except EventFileError:
        return False
