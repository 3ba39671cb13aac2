"""Reprocessing job: accounting with bad files mixed in, exactly-once output after a kill, registry
errors before any work, the CLI. Models are the untrained registered ones (plumbing, not physics)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dampeml.inference.reprocess import (
    EVENTS_DIR,
    MARKERS_DIR,
    ReprocessConfig,
    ReprocessInputError,
    file_key,
    model_column,
    reprocess,
)
from dampeml.io.datasource import DUPLICATE
from dampeml.io.root_reader import read_events
from dampeml.io.root_writer import write_event_file
from dampeml.io.schema import MC_ONLY
from dampeml.reconstruction.config import read_chain_config
from dampeml.registry.models import RegistryError
from tests.conftest import make_file

NAN_EVENTS = [3, 17, 40]


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from dampeml.runtime import init_ray

    init_ray(num_cpus=4, object_store_memory=300 * 2**20)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def registry(registered_models):
    """MLFLOW_TRACKING_URI at the session's registry for this module (the driver and subprocesses)."""
    uri = registered_models
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield uri
    if previous is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = previous


@pytest.fixture(scope="module")
def mixed_inputs(tmp_path_factory) -> Path:
    """Good MC and flight files, plus one of each kind of bad input."""
    d = tmp_path_factory.mktemp("reprocess-in")
    mc = make_file(d / "a_mc.root", "proton", 200, 100, 1e4, seed=41)
    make_file(d / "b_flight.root", "proton", 150, 100, 1e4, mode="flight", seed=42)
    events = read_events(mc)
    meta = {"mode": "mc", "generation": {"particle": "proton"}}
    nan = dict(events, bgo_energy=events["bgo_energy"].copy(), run_id=events["run_id"] + 1000)
    nan["bgo_energy"][NAN_EVENTS] = np.nan
    write_event_file(d / "c_nan.root", nan, meta)
    source = make_file(d / "src" / "d.root", "proton", 150, 100, 1e4, mode="flight", seed=43)
    data = bytearray(source.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 2000] = bytes(2000)  # header intact, baskets corrupt: its events are quarantined
    (d / "d_corrupt.root").write_bytes(bytes(data))
    (d / "e_junk.root").write_text("this is not a ROOT file\n" * 20)
    write_event_file(d / "f_empty.root", {k: v[:0] for k, v in events.items()}, meta)
    write_event_file(d / "g_nosignal.root", {k: v for k, v in events.items() if k != "stk_signal"}, meta)
    return d


@pytest.fixture(scope="module")
def hostile_inputs(tmp_path_factory) -> Path:
    """A good MC file, a byte copy of it under another name (every identity repeated across files),
    a file that repeats half of its own identities, and one whose metadata names an unknown mode."""
    d = tmp_path_factory.mktemp("reprocess-hostile")
    a = make_file(d / "a_mc.root", "proton", 60, 100, 1e4, seed=71)
    shutil.copyfile(a, d / "b_copy.root")
    meta = {"mode": "mc", "generation": {"particle": "proton"}}
    events = read_events(make_file(d / "src" / "c.root", "proton", 40, 100, 1e4, seed=72))
    events["event_id"] = np.concatenate([np.arange(20), np.arange(20)])  # entries 20-39 repeat 0-19
    write_event_file(d / "c_repeats.root", events, meta)
    bogus = read_events(make_file(d / "src" / "d.root", "proton", 30, 100, 1e4, seed=73))
    write_event_file(d / "d_bogus.root", bogus, {**meta, "mode": "bogus"})
    return d


def _outputs(out: Path) -> pa.Table:
    files = sorted((out / EVENTS_DIR).glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).sort_by(
        [("run_id", "ascending"), ("event_id", "ascending")]
    )


def _quarantine(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "quarantine.jsonl").read_text().splitlines()]


@pytest.mark.timeout(900)  # when first, its setup registers the session's models (minutes on a busy VM)
def test_every_event_is_written_or_quarantined_once(tmp_path, mixed_inputs, ray_local, registry):
    out = tmp_path / "reco"
    cfg = ReprocessConfig(
        str(mixed_inputs / "*.root"), str(out), actors=2, batch_size=64, events_per_block=100
    )
    t0 = time.perf_counter()
    result = reprocess(cfg)
    s = result.summary
    print(f"\nfirst run {time.perf_counter() - t0:.1f} s; totals {s['totals']}; {s['quarantined_by_reason']}")
    # 200 (mc) + 150 (flight) + 200 (nan) + 150 (corrupt, all quarantined) events in readable files
    assert s["totals"]["events"] == 700
    assert s["totals"]["unreadable_files"] == 3
    assert sum(s["quarantined_by_reason"].values()) == s["totals"]["quarantined"]
    unreadable = {
        f["input"].rsplit("/", 1)[1]: f["reason"] for f in s["files"] if f["status"] == "unreadable"
    }
    assert set(unreadable) == {"e_junk.root", "f_empty.root", "g_nosignal.root"}
    assert "no events" in unreadable["f_empty.root"] and "stk_signal" in unreadable["g_nosignal.root"]

    table = _outputs(out)
    q = _quarantine(out)
    per_event = [x for x in q if x["entry"] is not None]
    assert (
        table.num_rows == s["totals"]["written"] == 700 - len(per_event) == 700 - s["totals"]["quarantined"]
    )
    ids = list(zip(table["run_id"].to_pylist(), table["event_id"].to_pylist(), strict=True))
    assert len(set(ids)) == len(ids), "an event was written twice"
    # every event of the readable files is in exactly one of: the output, the quarantine
    expected = []
    for name in ("a_mc", "b_flight", "c_nan"):
        ev = read_events(mixed_inputs / f"{name}.root", branches=["run_id", "event_id"])
        expected += list(zip(ev["run_id"].tolist(), ev["event_id"].tolist(), strict=True))
    corrupt = [x for x in per_event if x["file"].endswith("d_corrupt.root")]
    assert len(corrupt) == 150 and all("cannot read events" in x["reason"] for x in corrupt)
    assert [x["event_id"] for x in corrupt] == list(range(150))
    expected += [(x["run_id"], x["event_id"]) for x in corrupt]
    assert len(set(expected)) == len(expected) == 700
    assert sorted(ids + [(x["run_id"], x["event_id"]) for x in per_event]) == sorted(expected)
    nan = sorted(x["event_id"] for x in per_event if x["reason"] == "non-finite values in bgo_energy")
    assert nan == NAN_EVENTS
    assert {x["file"].rsplit("/", 1)[1] for x in q if x["entry"] is None} == set(unreadable)

    # versions with every row; flight files used the aligned BGO models; no truth anywhere
    by_file = {f["input"].rsplit("/", 1)[1]: f for f in s["files"]}
    assert by_file["b_flight.root"]["mode"] == "flight" and by_file["a_mc.root"]["mode"] == "mc"
    flight = pq.read_table(out / by_file["b_flight.root"]["output"])
    mc = pq.read_table(out / by_file["a_mc.root"]["output"])
    for t, mode in ((flight, "flight"), (mc, "mc")):
        for net, version in s["versions"][mode].items():
            assert set(t[model_column(net)].to_pylist()) == {f"{net}/{version}"}
        assert not set(MC_ONLY) & set(t.column_names)
    assert any(n.endswith("-aligned") for n in s["versions"]["flight"])
    assert not any(n.endswith("-aligned") for n in s["versions"]["mc"])
    for col in (
        "track_x_top",
        "track_y_bot",
        "theta",
        "phi",
        "stk_charge",
        "inelastic_score",
        "electron_score",
    ):
        assert col in table.column_names
    # missing values are nulls, never NaN (SQL's avg() would return NaN): the quarantined events' outputs
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    assert floats and not any(pc.any(pc.is_nan(table[c])).as_py() for c in floats)
    no_hit = table.filter(pc.equal(table["n_track_hits"], 0))["stk_charge"]  # no hit, no charge: null
    assert no_hit.null_count == len(no_hit)

    # a rerun with the same arguments has nothing to do and rewrites nothing
    stamps = {p: p.stat().st_mtime_ns for p in (out / EVENTS_DIR).iterdir()}
    again = reprocess(cfg)
    assert again.files_processed == 0 and again.files_done_before == 4
    assert again.summary["totals"] == s["totals"]
    assert {p: p.stat().st_mtime_ns for p in (out / EVENTS_DIR).iterdir()} == stamps


@pytest.mark.timeout(600)  # four short jobs (first, idempotent rerun, resumed, one file added)
def test_bad_mode_and_repeated_ids_are_quarantined_and_the_job_goes_on(
    tmp_path, hostile_inputs, ray_local, registry
):
    src = tmp_path / "in"
    shutil.copytree(hostile_inputs, src, ignore=shutil.ignore_patterns("src"))
    out = tmp_path / "reco"
    cfg = ReprocessConfig(str(src / "*.root"), str(out), events_per_block=25, batch_size=32)
    s = reprocess(cfg).summary  # an unknown mode stopped the whole job with a KeyError ('bogus')
    print(f"\ntotals {s['totals']}; {s['quarantined_by_reason']}; scan {s['run']['duplicate_scan']}")
    unusable = {f["input"].rsplit("/", 1)[1]: f["reason"] for f in s["files"] if f["status"] != "done"}
    assert list(unusable) == ["d_bogus.root"] and "unknown mode 'bogus'" in unusable["d_bogus.root"]
    assert s["totals"] == {
        "files": 3,
        "unreadable_files": 1,
        "events": 160,
        "written": 60 + 20,
        "quarantined": 60 + 20,
    }
    assert s["quarantined_by_reason"] == {DUPLICATE: 80}
    assert s["run"]["duplicate_scan"]["events"] == 160 and s["run"]["duplicate_scan"]["duplicates"] == 80
    q = _quarantine(out)
    assert [x["file"].rsplit("/", 1)[1] for x in q if x["entry"] is None] == ["d_bogus.root"]
    # the first file in sorted order keeps an identity; each later copy names the kept one
    kept = {
        (x["file"].rsplit("/", 1)[1], x["entry"]): (
            x["duplicate_of"]["file"].rsplit("/", 1)[1],
            x["duplicate_of"]["entry"],
        )
        for x in q
        if x["reason"] == DUPLICATE
    }
    assert kept == {("b_copy.root", e): ("a_mc.root", e) for e in range(60)} | {
        ("c_repeats.root", e): ("c_repeats.root", e - 20) for e in range(20, 40)
    }
    table = _outputs(out)
    ids = list(zip(table["run_id"].to_pylist(), table["event_id"].to_pylist(), strict=True))
    assert len(ids) == len(set(ids)) == 80  # was 160 rows with 80 distinct identities
    assert sorted(ids) == sorted([(71, e) for e in range(60)] + [(72, e) for e in range(20)])

    # a rerun with the same arguments reads nothing and changes nothing
    again = reprocess(cfg)
    assert again.files_processed == 0 and again.summary["totals"] == s["totals"]
    assert again.summary["run"]["duplicate_scan"] is None
    # as if killed before committing a_mc.root, which holds the kept copies: the rerun keeps the same
    # copies (b_copy.root's marker lists its repeats, so it never claims them)
    key = file_key(str(src / "a_mc.root"))
    (out / MARKERS_DIR / f"{key}.json").unlink()
    (out / EVENTS_DIR / f"{key}.parquet").unlink()
    resumed = reprocess(cfg)
    assert resumed.files_processed == 1 and resumed.summary["totals"] == s["totals"]
    key_columns = ["run_id", "event_id"]  # outputs hold NaNs (no STK charge), never equal as a whole
    assert _outputs(out).select(key_columns).equals(table.select(key_columns))
    # a file added later that sorts first: the committed files keep their identities
    stamps = {p: p.stat().st_mtime_ns for p in (out / EVENTS_DIR).iterdir()}
    shutil.copyfile(src / "a_mc.root", src / "0_late_copy.root")
    late = reprocess(cfg)
    assert late.files_processed == 1 and late.summary["totals"]["written"] == 80
    by_file = {f["input"].rsplit("/", 1)[1]: f for f in late.summary["files"]}
    assert by_file["0_late_copy.root"]["quarantined"] == {DUPLICATE: 60}
    assert {p: p.stat().st_mtime_ns for p in (out / EVENTS_DIR).iterdir()} == stamps


@pytest.mark.slow  # three reprocessing jobs: ~40 s
def test_other_model_versions_refused_unless_overwrite(tmp_path, mixed_inputs, ray_local, registry):
    import mlflow

    from dampeml.models.architecture import Architecture
    from dampeml.models.catalog import build
    from dampeml.registry.bootstrap import log_model

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.root").write_bytes((mixed_inputs / "a_mc.root").read_bytes())
    out = tmp_path / "reco"
    first = ReprocessConfig(str(src / "*.root"), str(out), alias="staging", events_per_block=100)
    assert reprocess(first).summary["coarse_below_tev"] == "1"
    # the same models with the coarse Hough step at every energy: other outputs
    everywhere = first.chain.with_coarse_below_tev(float("inf"))
    with pytest.raises(
        ReprocessInputError, match=r"coarse_below_mev 1000000.0 \(now inf\).*pass --overwrite"
    ):
        reprocess(ReprocessConfig(**{**first.__dict__, "chain": everywhere}))
    # alias 'other': electron-proton at a new version, everything else as @staging
    client = mlflow.MlflowClient()
    for m in client.search_registered_models():
        if "staging" in m.aliases:
            client.set_registered_model_alias(m.name, "other", m.aliases["staging"])
    new = log_model(
        Architecture("electron-proton"), build("electron-proton", preset="small", compile=False), ["other"]
    )
    cfg = ReprocessConfig(str(src / "*.root"), str(out), alias="other", events_per_block=100)
    with pytest.raises(ReprocessInputError, match="pass --overwrite") as err:
        reprocess(cfg)
    print(f"\n{err.value}")
    result = reprocess(ReprocessConfig(**{**cfg.__dict__, "overwrite": True}))
    assert result.files_processed == 1
    table = _outputs(out)
    assert set(table[model_column("electron-proton")].to_pylist()) == {f"electron-proton/{new}"}
    assert table.num_rows == 200


def test_missing_alias_fails_before_any_work(tmp_path, mixed_inputs, ray_local, registry):
    out = tmp_path / "reco"
    with pytest.raises(RegistryError, match="nosuchalias") as err:
        reprocess(ReprocessConfig(str(mixed_inputs / "a_mc.root"), str(out), alias="nosuchalias"))
    print(f"\n{err.value}")
    assert not out.exists()


def test_pool_larger_than_the_cluster_is_refused_before_any_work(tmp_path, mixed_inputs, ray_local, registry):
    out = tmp_path / "reco"
    for kwargs, message in (({"gpus_per_actor": 1.0}, "GPUs"), ({"actors": 8}, "CPUs")):
        with pytest.raises(ReprocessInputError, match=message) as err:
            reprocess(ReprocessConfig(str(mixed_inputs / "a_mc.root"), str(out), **kwargs))
        print(f"\n{err.value}")
    assert not out.exists()


@pytest.mark.timeout(600)  # three pipelines (reference, killed, resumed): ~200 s on a busy 2-core VM
def test_killed_job_resumes_to_the_same_output(tmp_path, ray_local, registry):
    src = tmp_path / "in"
    for i in range(6):
        make_file(src / f"run{i}.root", "proton", 150, 100, 1e4, seed=60 + i)
    ref = tmp_path / "ref"
    args = dict(events_per_block=50, batch_size=50)
    reprocess(ReprocessConfig(str(src / "*.root"), str(ref), **args))
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "dampeml.cli.main",
        "reprocess",
        "--input",
        str(src / "*.root"),
        "--out",
        str(out),
    ]
    cmd += ["--events-per-block", "50", "--batch-size", "50", "--num-cpus", "3"]
    proc = subprocess.Popen(
        cmd,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RAY_ADDRESS": ""},
    )
    deadline = time.time() + 150
    while time.time() < deadline and len(list((out / MARKERS_DIR).glob("*.json"))) < 1:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / MARKERS_DIR).glob("*.json")))
    print(f"\nkilled after {done} of 6 files")
    assert 1 <= done < 6, "the kill must land mid-job"
    assert not (out / "summary.json").exists()
    stray = out / EVENTS_DIR / "published-but-no-marker.parquet"  # as if killed between the two
    stray.write_bytes(b"PAR1")
    result = reprocess(ReprocessConfig(str(src / "*.root"), str(out), **args))
    assert result.files_done_before >= done and result.files_processed == 6 - result.files_done_before
    a, b = _outputs(ref), _outputs(out)
    assert a.num_rows == b.num_rows == 900
    assert a.select(["run_id", "event_id"]).equals(b.select(["run_id", "event_id"]))
    for col in a.column_names:
        if pa.types.is_floating(a[col].type):
            np.testing.assert_allclose(
                a[col].to_numpy(), b[col].to_numpy(), rtol=1e-4, atol=1e-5, err_msg=col
            )
        else:
            assert a[col].equals(b[col]), col
    assert not stray.exists() and not (out / "_tmp").exists()
    assert sorted(p.name for p in (out / EVENTS_DIR).iterdir()) == sorted(
        f"{file_key(str(p))}.parquet" for p in src.glob("*.root")
    )


def test_cli_help_and_run(tmp_path, mixed_inputs, ray_local, registry):
    from dampeml.cli.main import app

    runner = CliRunner()
    res = runner.invoke(app, ["reprocess", "--help"])
    assert res.exit_code == 0
    for opt in ("--input", "--out", "--alias", "--runtime", "--actors", "--gpus-per-actor", "--batch-size"):
        assert opt in res.output
    assert "--coarse-below" in res.output
    out = tmp_path / "cli"
    chain_file = tmp_path / "chain.yaml"
    chain_file.write_text("coarse_below_mev: 5.0e+5\nprecise_passes: 1\n")
    argv = ["reprocess", "--input", str(mixed_inputs / "[ab]_*.root"), "--out", str(out)]
    argv += ["--chain", str(chain_file), "--coarse-below", "inf", "--num-cpus", "4"]
    res = runner.invoke(app, argv)
    print(res.output)
    assert res.exit_code == 0, res.output
    assert "written 350" in res.output and "quarantined 0" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"]["written"] == 350 and summary["coarse_below_tev"] == "inf"  # the flag wins
    assert summary["chain"]["precise_passes"] == 1  # the file's setting
    assert not (out / "_tmp").exists(), "a finished job leaves no attempt folder"
    written = read_chain_config(out / "chain.yaml")
    assert written.precise_passes == 1 and written.coarse_below_mev == float("inf")
    # the recorded invocation reruns the job: all done, nothing redone
    recorded = out / "reprocess.config.yaml"
    res = runner.invoke(app, ["--config", str(recorded), "reprocess", "--num-cpus", "4"])
    assert res.exit_code == 0, res.output
    assert "files were already done" in res.output and "written 350" in res.output
    # other chain settings than the outputs': refused, naming the setting
    res = runner.invoke(app, [*argv[:5], "--num-cpus", "4"])
    assert res.exit_code == 2 and re.search(r"precise_passes 1\s+\(now 2\)", res.output), res.output
    res = runner.invoke(app, [*argv[:-2], "--alias", "nosuchalias"])
    assert res.exit_code == 2 and "nosuchalias" in res.output


@pytest.mark.timeout(600)
def test_the_flux_reads_reprocessing_outputs_as_it_reads_the_event_files(tmp_path, ray_local, registry):
    """The flux measured from a reprocessing job's outputs (the chain's axis, deposit and zeta columns,
    the MC truth joined from the source files) equals the one measured from the same event files."""
    from dampeml.physics.measure import measure_flux
    from dampeml.physics.samples import sample_from_files, sample_from_reprocessed

    src = tmp_path / "in"
    files = {
        "electrons": make_file(src / "e.root", "electron", 300, 20, 2000, seed=71),
        "protons": make_file(src / "p.root", "proton", 300, 50, 5000, seed=72),
        "flight": make_file(src / "f.root", "electron", 200, 20, 2000, seed=73),  # stands for flight data
    }
    out = tmp_path / "reco"
    reprocess(ReprocessConfig(str(src / "*.root"), str(out), events_per_block=100))
    bins = np.array([30.0, 100.0, 300.0])
    flux = {}
    for how in ("files", "reprocessed"):
        samples = {}
        for name, path in files.items():
            if how == "files":
                samples[name] = sample_from_files([path])[:2]
            else:
                samples[name] = sample_from_reprocessed(
                    str(out), "zeta", mc=name != "flight", sources=[str(path)]
                )[:2]
        (flight, _), (electrons, generation), (protons, _) = (
            samples[k] for k in ("flight", "electrons", "protons")
        )
        flux[how] = measure_flux(flight, electrons, protons, generation, 1.0, bins).points
    for a, b in zip(flux["files"], flux["reprocessed"], strict=True):
        print(f"\n{a.e_low:.0f}-{a.e_high:.0f} GeV: flux {a.flux:.4g} / {b.flux:.4g}, counts {a.counts:.1f}")
        assert a.counts == pytest.approx(b.counts) and a.flux == pytest.approx(b.flux, rel=1e-9)
        assert a.efficiency == b.efficiency and a.cut == pytest.approx(b.cut, rel=1e-6)
