"""Exactly-once writes on an object store: a real S3 endpoint (moto's server, on a thread of this
process) reached the way a job on a cluster reaches S3: `s3://bucket/prefix` URIs, the endpoint and
keys in the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), which Ray's workers inherit.

The bucket keeps every version of every key (S3 versioning), so "written once" is counted, not
inferred: a commit marker that has two versions was committed twice.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dampeml.datasets.build import build_dataset
from dampeml.datasets.spec import load_spec
from dampeml.datasets.split import SPLITS
from dampeml.datasets.units import plan_units
from dampeml.reconstruction.config import ChainConfig
from dampeml.storage import TMP_DIR, UNITS_DIR, Store

pytest.importorskip("moto.server", reason="moto[server] (the test extra) is not installed")

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "datasets" / "bgo-direction-low-small.yaml"
LIMIT = 400
BUCKET = "dampeml-test"

# The killed build: a driver of its own with its own local Ray that, as soon as the first unit is
# committed (`progress` runs on the driver after each unit's marker is written), SIGKILLs every
# process of the job at once, as a crash of the node would: Ray's processes and its workers (units in
# flight included: they run in process groups of their own and would otherwise finish their unit
# after the driver's death), then itself.
KILLED_BUILD = """
import os, signal, sys
from dampeml.datasets.build import build_dataset
from dampeml.datasets.spec import load_spec

def descendants(pid):
    children = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/stat") as f:
                children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(d))
        except OSError:
            pass
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found

def progress(done, total):
    if done:
        for pid in descendants(os.getpid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.kill(os.getpid(), signal.SIGKILL)

build_dataset(load_spec(sys.argv[1]), sys.argv[2], limit_events=int(sys.argv[3]), progress=progress,
              num_cpus=2)
raise SystemExit("the build ended without being killed")
"""


@pytest.fixture(scope="module")
def s3():
    """A versioned bucket on a local S3 server; the environment points every S3 client at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture(scope="module")
def ray_s3(s3):
    """A local Ray started after the endpoint is in the environment (its workers inherit it)."""
    import ray

    from dampeml.runtime import init_ray

    if ray.is_initialized():  # started by another module, its workers without the endpoint
        ray.shutdown()
    init_ray(num_cpus=4)
    yield
    ray.shutdown()


def _versions(client, prefix: str) -> dict[str, int]:
    """{key below prefix: how many times it was written} (directory placeholders left out)."""
    counts: dict[str, int] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for v in page.get("Versions", []):
            key = v["Key"][len(prefix) + 1 :]
            if key and not key.endswith("/"):
                counts[key] = counts.get(key, 0) + 1
    return counts


def _etags(client, prefix: str) -> dict[str, str]:
    """{shard or marker below prefix: its ETag (the MD5 of its bytes)} of the live objects."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/")
    return {
        o["Key"][len(prefix) + 1 :]: o["ETag"]
        for page in pages
        for o in page.get("Contents", [])
        if o["Key"].endswith(".parquet") or f"/{UNITS_DIR}/" in o["Key"]
    }


def _split_rows(store: Store, split: str) -> pa.Table:
    """Every Parquet object of a split (as listed, committed or not), sorted by identity."""
    files = [store.path(split, n) for n in store.list(split, ".parquet")]
    table = pa.concat_tables(pq.read_table(f, filesystem=store.fs) for f in files)
    return table.sort_by([("run_id", "ascending"), ("event_id", "ascending")]).combine_chunks()


def _content_hash(table: pa.Table) -> str:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()


def _check_dataset(store: Store, manifest: dict, planned: int) -> dict[str, str]:
    """Accounting closes, every listed shard is a committed one, every identity is written once;
    returns the content hash of each split."""
    acc = manifest["accounting"]
    assert acc["read"] == acc["written"] + sum(acc["filtered"].values()) + sum(acc["quarantined"].values())
    assert acc["read"] == planned and manifest["units"] == len(store.list(UNITS_DIR, ".json"))
    committed = {
        sh["file"]
        for name in store.list(UNITS_DIR, ".json")
        for sh in store.read_json(f"{UNITS_DIR}/{name}")["shards"].values()
    }
    listed = {f"{s}/{n}" for s in SPLITS for n in store.list(s, ".parquet")}
    assert listed == committed, "a shard without a marker (or a marker without its shard)"
    hashes, ids = {}, []
    for split in SPLITS:
        rows = _split_rows(store, split)
        assert rows.num_rows == manifest["splits"][split]["events"], split
        ids += zip(rows["run_id"].to_pylist(), rows["event_id"].to_pylist(), strict=True)
        hashes[split] = _content_hash(rows)
    assert len(ids) == len(set(ids)) == acc["written"], "an event written twice"
    assert not store.list(TMP_DIR), "attempt files left behind"
    return hashes


@pytest.mark.timeout(300)
def test_killed_build_on_s3_resumes_to_the_uninterrupted_dataset(tmp_path, s3, ray_s3):
    spec = load_spec(SPEC)
    ref_uri, out_uri = f"s3://{BUCKET}/ref/ds", f"s3://{BUCKET}/killed/ds"
    ref = build_dataset(spec, ref_uri, limit_events=LIMIT)
    planned = sum(u.n_events for u in plan_units(spec, LIMIT)[0])
    ref_hashes = _check_dataset(Store.open(ref_uri), ref.manifest, planned)
    total = ref.units_total

    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_BUILD, str(SPEC), out_uri, str(LIMIT)],
        start_new_session=True,
        env={**os.environ, "RAY_ADDRESS": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = proc.communicate(timeout=240)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything of its group still alive
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL, stderr[-3000:]
    store = Store.open(out_uri)
    committed_at_kill = set(store.list(UNITS_DIR, ".json"))
    live = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="killed/ds/").get("Contents", [])]
    print(f"\nkilled after {len(committed_at_kill)} of {total} units; objects left: {sorted(live)}")
    assert 1 <= len(committed_at_kill) < total, "the kill must land mid-build"
    assert not store.exists("manifest.json")

    summary = build_dataset(spec, out_uri, limit_events=LIMIT, resume=True)
    assert summary.units_done_before == len(committed_at_kill)
    assert _check_dataset(store, summary.manifest, planned) == ref_hashes
    assert summary.manifest["splits"] == ref.manifest["splits"]

    # Exactly once, counted on the bucket: every marker was written once, and the units committed
    # before the kill were not written again; only shards of uncommitted units may be rewritten.
    written = _versions(s3, "killed/ds")
    markers = {k: n for k, n in written.items() if k.startswith(f"{UNITS_DIR}/")}
    assert len(markers) == total and set(markers.values()) == {1}, markers
    for name in committed_at_kill:
        for sh in store.read_json(f"{UNITS_DIR}/{name}")["shards"].values():
            assert written[sh["file"]] == 1, sh["file"]

    # byte for byte: every shard and marker of the resumed build is the uninterrupted build's
    assert _etags(s3, "killed/ds") == _etags(s3, "ref/ds")

    from dampeml.datasets.loader import network_dataset

    assert network_dataset(out_uri, "train").count() == summary.manifest["splits"]["train"]["events"]


def _reprocessed(info, written_value: float) -> pa.Table:
    """What the pipeline hands `commit_file` for one input file: one row per entry (the last one
    quarantined by the reader), with one output column."""
    n = info.n_events
    run = int(hashlib.sha1(info.path.encode()).hexdigest()[:6], 16)
    return pa.table(
        {
            "entry": pa.array(range(n), pa.int64()),
            "run_id": pa.array([run] * n, pa.int64()),
            "event_id": pa.array(range(n), pa.int64()),
            "quarantine_reason": pa.array([""] * (n - 1) + ["no BGO hit"], pa.string()),
            "energy": pa.array([written_value] * n, pa.float64()),
        }
    )


@pytest.mark.timeout(120)
def test_reprocessing_commits_on_s3_exactly_once(s3, monkeypatch):
    """The reprocessing commit path on the bucket: a job killed between publishing a file's events
    and writing its marker, rerun with the inputs of that moment: committed files are not written
    again, the half-published output is removed, the summary closes."""
    from dampeml.inference.reprocess import (
        EVENTS_DIR,
        MARKERS_DIR,
        commit_file,
        file_key,
        remove_orphans,
        write_summary,
    )
    from dampeml.io.datasource import EventFilePlan
    from dampeml.io.root_reader import EventFileInfo

    prefix = "reprocess/out"
    store = Store.open(f"s3://{BUCKET}/{prefix}")
    infos = {
        name: EventFileInfo(f"/data/{name}.root", n, "mc", {}, ())
        for name, n in (("a", 6), ("b", 5), ("c", 4))
    }
    versions = {"bgo-direction-low": "1"}
    commit_file(store, infos["a"], _reprocessed(infos["a"], 1.0), versions, ["energy"])

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the marker")

    with monkeypatch.context() as m:  # c's events are published, the job dies before its marker
        m.setattr(Store, "write_json", killed)
        with pytest.raises(KeyboardInterrupt):
            commit_file(store, infos["c"], _reprocessed(infos["c"], 3.0), versions, ["energy"])
    assert store.exists(EVENTS_DIR, f"{file_key(infos['c'].path)}.parquet")

    # the rerun (c is no longer among the inputs): what reprocess() does with the same store
    done = {n[: -len(".json")] for n in store.list(MARKERS_DIR, ".json")}
    todo = [i for i in (infos["a"], infos["b"]) if file_key(i.path) not in done]
    assert [i.path for i in todo] == [infos["b"].path]
    for info in todo:
        commit_file(store, info, _reprocessed(info, 2.0), versions, ["energy"])
    assert remove_orphans(store) == [f"{file_key(infos['c'].path)}.parquet"]
    plan = EventFilePlan([infos["a"], infos["b"]], [], ())
    params = {
        "alias": "production",
        "runtime": "tensorflow",
        "chain": ChainConfig().as_dict(),
        "versions": {},
    }
    summary, quarantine = write_summary(store, plan, params, {})
    totals = summary["totals"]
    assert totals["written"] + totals["quarantined"] == totals["events"] == 11
    assert len(quarantine) == 2

    outputs = {f"{EVENTS_DIR}/{file_key(i.path)}.parquet" for i in plan.good}
    assert {f"{EVENTS_DIR}/{n}" for n in store.list(EVENTS_DIR, ".parquet")} == outputs
    rows = pa.concat_tables(pq.read_table(store.path(o), filesystem=store.fs) for o in sorted(outputs))
    ids = list(zip(rows["run_id"].to_pylist(), rows["event_id"].to_pylist(), strict=True))
    assert len(ids) == len(set(ids)) == totals["written"]
    written = _versions(s3, prefix)
    key_a, key_b = file_key(infos["a"].path), file_key(infos["b"].path)
    once = (f"{EVENTS_DIR}/{key_a}.parquet", f"{MARKERS_DIR}/{key_a}.json", f"{MARKERS_DIR}/{key_b}.json")
    for key in once:  # committed before the kill, or once by the rerun
        assert written[key] == 1, key
    assert not any(k.startswith(f"{MARKERS_DIR}/{file_key(infos['c'].path)}") for k in written)
