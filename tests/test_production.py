"""Simulation production on Ray: seeded shards, restart without duplicates, remake of broken shards."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import ray

from dampeml.detector.production import (
    MANIFEST,
    ProductionError,
    ProductionRequest,
    run_production,
    shard_seed,
)
from dampeml.io.root_reader import inspect_file, read_events
from dampeml.io.schema import JAGGED
from dampeml.runtime import init_ray

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_session():
    init_ray(num_cpus=4, log_to_driver=False)
    yield
    ray.shutdown()


def request_for(out_dir: Path, **kw) -> ProductionRequest:
    args = dict(
        particle="proton",
        n_events=150,
        energy_min=100.0,
        energy_max=1e5,
        out_dir=str(out_dir),
        base_seed=5,
        events_per_shard=50,
    )
    return ProductionRequest(**{**args, **kw})


def mtimes(paths) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in paths}


@pytest.fixture(scope="module")
def produced(ray_session, tmp_path_factory):
    out = tmp_path_factory.mktemp("prod")
    request = request_for(out)
    summary = run_production(request, progress=False, log=None)
    paths = [s.path for s in request.shards()]
    events = {p.name: read_events(p) for p in paths}
    return request, summary, paths, events


def test_first_run_makes_every_shard(produced):
    request, summary, paths, events = produced
    assert summary.made == [0, 1, 2] and summary.skipped == [] and summary.complete
    assert [p.name for p in paths] == [f"proton_mc_s5_{i:05d}.root" for i in range(3)]
    infos = [inspect_file(p) for p in paths]
    assert [i.n_events for i in infos] == [50, 50, 50]
    assert summary.n_events == 150
    assert summary.n_generated == sum(i.metadata["n_generated"] for i in infos) > 150
    manifest = json.loads((Path(request.out_dir) / MANIFEST).read_text())
    assert manifest["complete"] and manifest["n_events"] == 150
    assert [s["file"] for s in manifest["shards"]] == [p.name for p in paths]
    seeds = [s["seed"] for s in manifest["shards"]]
    assert len(set(seeds)) == 3 and seeds == [i.metadata["generation"]["seed"] for i in infos]
    assert len({s["run_id"] for s in manifest["shards"]}) == 3
    # different seeds, different events
    e = [events[p.name] for p in paths]
    assert not np.array_equal(e[0]["true_energy"], e[1]["true_energy"])
    assert not np.array_equal(e[1]["bgo_energy"], e[2]["bgo_energy"])


def test_seed_rule_is_deterministic_and_spawn_compatible():
    children = np.random.SeedSequence(5).spawn(3)
    for i, child in enumerate(children):
        assert shard_seed(5, i) == int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))
    assert len({shard_seed(5, i) for i in range(1000)}) == 1000
    assert shard_seed(5, 0) != shard_seed(6, 0)


def test_rerun_skips_complete_shards(produced):
    request, _, paths, _ = produced
    before = mtimes(paths)
    summary = run_production(request, progress=False, log=None)
    assert summary.made == [] and summary.skipped == [0, 1, 2]
    assert summary.n_events == 150
    assert mtimes(paths) == before


def test_conflicting_request_is_refused_before_any_work(produced):
    request, _, paths, _ = produced
    before = mtimes(paths)
    other = request_for(Path(request.out_dir), energy_max=1e4)
    with pytest.raises(ValueError, match="energy_max"):
        run_production(other, progress=False, log=None)
    assert mtimes(paths) == before
    # shards of an older simulation version are never topped up with today's physics
    import dampeml.detector.production as production

    mp = pytest.MonkeyPatch()
    mp.setattr(production, "SIMULATION_VERSION", production.SIMULATION_VERSION + 1)
    try:
        with pytest.raises(ValueError, match="simulation version"):
            run_production(request, progress=False, log=None)
    finally:
        mp.undo()
    assert mtimes(paths) == before


def test_missing_and_corrupt_shards_are_remade_identically(produced):
    request, _, paths, events = produced
    paths[1].unlink()
    with open(paths[2], "r+b") as f:
        f.truncate(paths[2].stat().st_size // 2)
    before = mtimes([paths[0]])
    summary = run_production(request, progress=False, log=None)
    assert summary.made == [1, 2] and summary.skipped == [0]
    assert list(summary.remade) == [2] and "truncated" in summary.remade[2]
    assert mtimes([paths[0]]) == before
    for p in paths[1:]:
        again, original = read_events(p), events[p.name]
        assert again.keys() == original.keys()
        for name, values in original.items():
            same = (
                ak.array_equal(again[name], values) if name in JAGGED else np.array_equal(again[name], values)
            )
            assert same, f"{p.name}: {name} differs after the remake"
    manifest = json.loads((Path(request.out_dir) / MANIFEST).read_text())
    assert manifest["complete"] and manifest["n_events"] == 150


def test_failed_shard_is_reported_and_the_rest_kept(ray_session, tmp_path):
    request = request_for(tmp_path, n_events=100)
    request.shard(1).path.mkdir(parents=True)  # a directory where the file must go: the write fails
    with pytest.raises(ProductionError, match="shard 1"):
        run_production(request, progress=False, log=None)
    assert inspect_file(request.shard(0).path).n_events == 50
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert not manifest["complete"] and [s["index"] for s in manifest["shards"]] == [0]
    request.shard(1).path.rmdir()
    summary = run_production(request, progress=False, log=None)
    assert summary.made == [1] and summary.skipped == [0] and summary.complete


def test_job_script(ray_session, tmp_path, monkeypatch):
    """jobs/simulate.py, run as `ray job submit` runs it: its exit status is the command's."""
    script = ROOT / "jobs" / "simulate.py"

    def run(argv: list[str]) -> int:
        monkeypatch.setattr(sys, "argv", [str(script), *argv])
        with pytest.raises(SystemExit) as done:
            runpy.run_path(str(script), run_name="__main__")
        return done.value.code

    def args(energy_max: str) -> list[str]:
        return [
            "--particle",
            "electron",
            "--events",
            "30",
            "--energy-min",
            "10",
            "--energy-max",
            energy_max,
            "--out",
            str(tmp_path),
            "--events-per-shard",
            "20",
            "--seed",
            "3",
            "--no-progress",
        ]

    assert run(args("100")) == 0
    names = sorted(p.name for p in tmp_path.glob("*.root"))
    assert names == ["electron_mc_s3_00000.root", "electron_mc_s3_00001.root"]
    assert inspect_file(tmp_path / names[1]).n_events == 10
    assert run(args("1000")) == 2  # another request's directory: refused (bad input)
