"""Paths issue 19 listed as untested: the alignment gate and the success paths of the CLI.

- `align_registered` registers `<network>-aligned` and moves the alias to it only when the
  held-out BGO-STK residual gets lower; otherwise it registers nothing and returns version None.
  Both on a private MLflow store holding the session's trained BGO network (tests/trained_bgo.py).
- `dampeml simulate`, `dampeml train` and `dampeml evaluate` run to the end through Typer's
  CliRunner on tiny inputs, and what they print is checked against what they wrote.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.cli_runner import run_cli

REPO = Path(__file__).resolve().parents[1]


def _private_store(root: Path, monkeypatch) -> str:
    """An empty MLflow store (sqlite, artifacts beside it) under `root`, as MLFLOW_TRACKING_URI."""
    from dampeml.registry.bootstrap import ensure_experiment

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    ensure_experiment(root / "artifacts")
    return uri


# ---- the alignment gate

FLIGHT_EVENTS = 1500  # per run: ~430 clean events fitted, ~460 held out
HEAD_EPOCHS = 2  # enough to remove most of a ~3 mm offset (see test_alignment for the full fit)
#: Two flight-like runs whose BGO sits on opposite sides (simulation-only conditions, seeds 7 and 5:
#: offsets (-1.76, +1.43) and (+1.87, -1.90) mm), given one run number.
RUN_SEED, MOVED_SEED = 7, 5


def _flight_run(seed: int) -> tuple[dict, dict]:
    from dampeml.detector.simulation import SimulationConfig, simulate

    branches, metadata = simulate(
        SimulationConfig("proton", FLIGHT_EVENTS, 1000.0, 1e5, mode="flight", seed=seed, run_id=1)
    )
    return branches, metadata


def _write_part(path: Path, run: tuple[dict, dict], keep) -> str:
    from dampeml.io.root_writer import write_event_file

    branches, metadata = run
    part = {k: v[keep] for k, v in branches.items()}
    write_event_file(path, part, {**metadata, "n_events": int(keep.sum())})
    return str(path)


@pytest.fixture(scope="module")
def aligned_store(tmp_path_factory, trained_bgo_mid):
    """A private store with the session's trained bgo-direction-mid (v1 @production) and its
    identity-initialised `-aligned` model (v1 @production), and flight-like files:
    `run` (one misaligned run) and `moved` (the fit half of that run's events with the held-out
    half of a run whose BGO sits the other way: the BGO moved between the two halves)."""
    import tf_keras as keras

    from dampeml.registry.bootstrap import ensure_experiment, register_catalog
    from dampeml.training.alignment import held_out

    d = tmp_path_factory.mktemp("align-registry")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d / 'mlflow.db'}")
    ensure_experiment(d / "artifacts")
    trained = trained_bgo_mid[0]
    model = keras.models.clone_model(trained)  # with_alignment_head freezes its base in place:
    model.set_weights(trained.get_weights())  # leave the session's model as the other tests see it
    register_catalog(
        aliases=("production",), networks=["bgo-direction-mid"], models={"bgo-direction-mid": model}
    )
    run, other = _flight_run(RUN_SEED), _flight_run(MOVED_SEED)
    fit = ~held_out(run[0]["run_id"], run[0]["event_id"])
    test = held_out(other[0]["run_id"], other[0]["event_id"])
    files = {
        "run": [_write_part(d / "run.root", run, np.ones(FLIGHT_EVENTS, bool))],
        "moved": [
            _write_part(d / "fit-half.root", run, fit),
            _write_part(d / "held-out-half.root", other, test),
        ],
    }
    yield files
    mp.undo()


def _aligned_versions() -> tuple[list[str], str]:
    """Versions of bgo-direction-mid-aligned and the one @production."""
    from dampeml.registry.models import list_versions, version_of

    return sorted((v.version for v in list_versions("bgo-direction-mid-aligned")), key=int), version_of(
        "bgo-direction-mid-aligned", "production"
    )


@pytest.mark.timeout(300)
def test_alignment_that_does_not_lower_the_held_out_residual_registers_nothing(aligned_store):
    """The head fitted where the BGO sat one way cannot correct the held-out events of a BGO
    moved the other way: their residual grows, and the gate keeps the registry as it was."""
    from dampeml.io.root_reader import inspect_file
    from dampeml.training.alignment import align_registered

    fit_file, test_file = aligned_store["moved"]
    offsets = [
        np.sign(inspect_file(f).metadata["simulation_only_flight_conditions"]["bgo_offset_mm"])
        for f in (fit_file, test_file)
    ]
    assert (offsets[0] == -offsets[1]).all(), "the premise: the BGO moved the other way in x and y"
    before = _aligned_versions()
    result, version, extra = align_registered("bgo-direction-mid", aligned_store["moved"], epochs=HEAD_EPOCHS)
    b, a = result.before, result.after
    print(
        f"\nheld-out residual 68% {b['residual68_mm']:.2f} -> {a['residual68_mm']:.2f} mm, offset "
        f"{b['offset_mm']:.2f} -> {a['offset_mm']:.2f} mm "
        f"({result.n_fit} fitted, {result.n_held_out} held out)"
    )
    assert result.n_fit >= 100 and result.n_held_out >= 50
    assert a["offset_mm"] > b["offset_mm"]  # the fitted correction points the wrong way here
    assert a["residual68_mm"] >= b["residual68_mm"]
    assert version is None
    assert _aligned_versions() == before  # no new version, the alias where it was
    assert extra["n_bad_events"] == 0


@pytest.mark.timeout(300)
def test_alignment_that_lowers_the_held_out_residual_is_registered_and_aliased(aligned_store):
    from dampeml.models.architecture import Architecture
    from dampeml.registry.models import list_versions, load_model, registered_architecture
    from dampeml.training.alignment import align_registered, bgo_inputs

    versions, holder = _aligned_versions()
    result, version, extra = align_registered("bgo-direction-mid", aligned_store["run"], epochs=HEAD_EPOCHS)
    b, a = result.before, result.after
    print(
        f"\nheld-out residual 68% {b['residual68_mm']:.2f} -> {a['residual68_mm']:.2f} mm, offset "
        f"{b['offset_mm']:.2f} -> {a['offset_mm']:.2f} mm; registered v{version} (was v{holder})"
    )
    assert a["residual68_mm"] < b["residual68_mm"] and a["offset_mm"] < b["offset_mm"]
    assert version is not None and version not in versions
    assert _aligned_versions() == (sorted([*versions, version], key=int), version)  # the alias moved to it
    (new,) = [v for v in list_versions("bgo-direction-mid-aligned") if v.version == version]
    tags = new.tags
    assert tags["base_model"] == "bgo-direction-mid v1"
    assert tags["flight_files"] == ",".join(aligned_store["run"])
    assert (tags["n_fit"], tags["n_held_out"]) == (str(result.n_fit), str(result.n_held_out))
    for k in b:
        assert float(tags[f"before_{k}"]) == pytest.approx(b[k], abs=1e-4)
        assert float(tags[f"after_{k}"]) == pytest.approx(a[k], abs=1e-4)
    assert float(tags["test_mae"]) == pytest.approx(a["residual68_mm"], abs=1e-5)
    arch = registered_architecture("bgo-direction-mid-aligned", version)
    assert arch == Architecture("bgo-direction-mid", "small", alignment_head=True)
    # what the alias now serves is the aligned model itself
    from dampeml.io.root_reader import read_events

    x = bgo_inputs(read_events(aligned_store["run"][0], 0, 64))
    served = load_model("models:/bgo-direction-mid-aligned@production").predict(x, verbose=0)
    np.testing.assert_allclose(served, result.model.predict(x, verbose=0), rtol=1e-5, atol=1e-3)


# ---- dampeml simulate


@pytest.mark.timeout(120)
def test_simulate_writes_a_readable_file_with_the_requested_events(tmp_path):
    from dampeml.io.root_reader import inspect_file, read_events
    from dampeml.io.schema import MC_ONLY

    # a folder name long enough that the message passes 80 columns: the path must still print whole
    mc, flight = tmp_path / ("mc-" + "m" * 80) / "p.root", tmp_path / "flight.root"
    sim = ("--particle", "helium", "--energy-min", "100", "--energy-max", "1000")
    code, out = run_cli("simulate", *sim, "--events", "37", "--seed", "5", "--out", str(mc))
    print(f"\n{out}")
    assert code == 0, out
    assert f"wrote 37 mc helium events to {mc}" in out
    info = inspect_file(mc)
    assert (info.n_events, info.mode) == (37, "mc")
    assert set(MC_ONLY) <= set(info.branches)
    events = read_events(mc)
    assert (events["run_id"] == 5).all() and len(set(events["event_id"].tolist())) == 37
    assert (events["true_pdg"] == 1000020040).all()  # helium-4
    generation = info.metadata["generation"]
    assert (generation["particle"], generation["energy_min"], generation["energy_max"]) == (
        "helium",
        100,
        1000,
    )
    assert (events["true_energy"] >= 100).all() and (events["true_energy"] <= 1000).all()

    code, out = run_cli(
        "simulate", *sim, "--events", "12", "--mode", "flight", "--run-id", "4242", "--out", str(flight)
    )
    print(out)
    assert code == 0, out
    assert "wrote 12 flight helium events" in out
    info = inspect_file(flight)
    assert (info.n_events, info.mode) == (12, "flight")
    assert not set(MC_ONLY) & set(info.branches)  # no truth in flight-like data
    assert (read_events(flight)["run_id"] == 4242).all()

    # same seed, same events; an existing file is kept unless --overwrite
    code, out = run_cli("simulate", *sim, "--events", "37", "--seed", "5", "--out", str(mc))
    assert code == 2 and "--overwrite" in out, out
    again = tmp_path / "again.root"
    assert run_cli("simulate", *sim, "--events", "37", "--seed", "5", "--out", str(again))[0] == 0
    assert (read_events(again)["bgo_energy"] == events["bgo_energy"]).all()


# ---- dampeml train


@pytest.fixture
def own_ray():
    """Ray as this test leaves it: shut down after the test if the test started it."""
    import ray

    started_here = not ray.is_initialized()
    yield
    if started_here and ray.is_initialized():
        ray.shutdown()


@pytest.mark.timeout(600)
def test_train_registers_a_version_with_its_architecture(tmp_path, monkeypatch, ray_idle, own_ray):
    from dampeml.datasets.build import build_dataset
    from dampeml.datasets.spec import load_spec
    from dampeml.models.architecture import Architecture
    from dampeml.registry.models import list_versions, registered_architecture

    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    _private_store(tmp_path / "registry", monkeypatch)
    data = tmp_path / "dataset"
    spec = load_spec(REPO / "datasets" / "bgo-direction-low-small.yaml")
    build_dataset(spec, str(data), limit_events=600, num_cpus=4)  # the local Ray the CLI asks for
    code, out = run_cli(
        "train", "bgo-direction-low", "--dataset", str(data), "--workers", "1", "--epochs", "1",
        "--steps-per-epoch", "2", "--storage", str(tmp_path / "runs"), "--run-name", "cli-train",
    )  # fmt: skip
    print(f"\n{out}")
    assert code == 0, out
    m = re.search(r"registered bgo-direction-low version (\d+) \(MLflow run (\w+)\)", out)
    assert m, out
    version = m.group(1)
    assert f"dampeml models promote bgo-direction-low {version}" in out
    assert re.search(r"test: .*test_mae=\d", out), out
    (registered,) = list_versions("bgo-direction-low")  # one version, the printed one, no alias yet
    assert registered.version == version and not registered.aliases
    assert "test_mae" in registered.tags
    assert registered_architecture("bgo-direction-low", version) == Architecture("bgo-direction-low", "small")
    assert (tmp_path / "runs" / "cli-train").is_dir()
    assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "dampeml-runs").exists()


# ---- dampeml evaluate

EVALUATE_EVENTS = 250  # per particle


@pytest.mark.timeout(300)
def test_evaluate_writes_the_report_of_the_registered_chain(
    registered_models, sample_files, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_models)
    from dampeml.io.root_reader import inspect_file, read_events
    from dampeml.io.root_writer import write_event_file

    mc = tmp_path / "mc"
    mc.mkdir()
    for particle in ("proton", "helium"):  # the first events of the session's small MC files
        info = inspect_file(sample_files[particle])
        write_event_file(
            mc / f"{particle}.root",
            read_events(info.path, 0, EVALUATE_EVENTS, info=info),
            {**info.metadata, "n_events": EVALUATE_EVENTS},
        )
    out = tmp_path / "report"
    code, text = run_cli("evaluate", "--input", str(mc / "*.root"), "--out", str(out), "--batch-size", "500")
    print(f"\n{text}")
    assert code == 0, text
    metrics = json.loads((out / "metrics.json").read_text())
    n = metrics["n_events"] + metrics["n_quarantined"]
    assert n == 2 * EVALUATE_EVENTS, metrics  # every event of both files, read or listed
    assert f"report of {metrics['n_events']} events: {out / 'report.md'}" in text
    report = (out / "report.md").read_text()
    assert "## Track efficiency (paper Table 2" in report
    table = report.split("## Track efficiency", 1)[1].split("\n## ", 1)[0]
    assert "proton" in table and "helium" in table, table
    assert metrics["efficiency"], "Table 2 has no rows"
    assert {"proton", "helium"} <= {row.get("particle") for row in metrics["efficiency"]}, metrics[
        "efficiency"
    ][:2]
    assert metrics["events_per_particle"]["proton"] > 0 and metrics["events_per_particle"]["helium"] > 0
    assert metrics["events_per_particle"]["electron"] == 0
    assert set(metrics["model_versions"].values()) == {"1"}  # the store's production versions
    for png in ("direction_68.png", "stk_charge.png", "roc.png"):
        assert (out / png).stat().st_size > 0
