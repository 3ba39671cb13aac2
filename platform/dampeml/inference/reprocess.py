"""Full-mission reprocessing: event files in, one Parquet file of reconstructed events per input file.

The pipeline: plan the inputs on the driver (bad files found here are quarantined whole), pin the
model versions the alias resolves to (a missing alias or model fails here, before any work), read
the files with Ray Data (`dampeml.io.datasource`, truth branches never read), run the chain in an
actor pool (`ChainPredictor`: models loaded once per actor, CPU or GPU), and commit each input
file on the driver as soon as all its rows are back.

Layout at `out` (a local path or a pyarrow URI):

    events/<stem>-<hash>.parquet  reconstructed events of one input file: run_id, event_id, the
                                  chain's OUTPUT_COLUMNS, and per network `model_<role>` holding
                                  'registered name/version' (e.g. model_bgo_direction_low =
                                  'bgo-direction-low-aligned/3' for flight data); one schema for
                                  flight and MC files, so `events/` reads as one table
    _files/<stem>-<hash>.json     the commit marker of that input file: its accounting, written last
    quarantine.jsonl              one line per quarantined event (file, entry, run_id, event_id,
                                  reason; a repeated identity also `duplicate_of`: the kept copy's
                                  file and entry), or per unusable file (entry null: its events are
                                  unknown; e.g. unreadable, no events, unknown metadata `mode`)
    summary.json                  counts per file and totals, versions, chain settings, throughput
    chain.yaml                    the chain's settings (reconstruction.config; `--chain` reads it)
    _job.json                     what the outputs were made with (runtime, chain, pinned versions)

Exactly-once output (Ray Data writes are not: a retried task rewrites its file without a commit
step): Ray Data only computes; the driver writes each output into a private attempt file
(`_tmp/<uuid>.tmp`), publishes it by rename, then writes the file's marker. An input file is done
if and only if its marker exists. A killed job rerun with the same arguments skips the done files
and redoes the rest (overwriting any half-published output). A rerun whose alias resolves to other
versions, or with other chain settings (the runtime, any field of `chain.yaml`), is refused unless
`overwrite=True`, which removes the previous outputs first; to keep both, write to a new `out`.
New input files can be added to an existing `out` by a rerun with the same models. One job at a
time may write to an `out`.

Every event identity (run_id, event_id) is written at most once per `out`. Before the pipeline
runs, the driver reads only the run_id and event_id branches of the planned files (linear in the
events; its cost is in summary.json under run.duplicate_scan) and finds the repeats, within a file
and across files, by one deterministic rule: files already committed in `out` keep the identities
they hold, then the other files in sorted path order, each in entry order; the first occurrence is
kept, every later one is quarantined with DUPLICATE and the kept copy. A killed job rerun makes the
same decisions (committed files record which of their entries were repeats); a rerun with nothing
to do reads nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform as stdlib_platform
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from dampeml import __version__
from dampeml.bookkeeping import Ledger, check_accounting
from dampeml.errors import InputError
from dampeml.inference.predictor import MODES, ChainPredictor, ReprocessError, ReprocessInputError
from dampeml.io.datasource import (
    DUPLICATE,
    DuplicateScan,
    EventFilePlan,
    PathsOrGlob,
    plan_event_files,
    read_event_files,
    scan_duplicates,
)
from dampeml.io.root_reader import EventFileInfo
from dampeml.io.schema import readable_branches, required_branches
from dampeml.reconstruction.chain import OUTPUT_COLUMNS, chosen_models
from dampeml.reconstruction.config import ChainConfig, chain_config_from_dict
from dampeml.registry.tracking import tracking_uri
from dampeml.security import check_job_paths
from dampeml.storage import QUARANTINE, TMP_DIR, Store

Runtime = Literal["tensorflow", "onnx"]
RUNTIMES = ("tensorflow", "onnx")
JOB_FILE = "_job.json"
MARKERS_DIR = "_files"
EVENTS_DIR = "events"
SUMMARY = "summary.json"
_RANGE = re.compile(r"events \d+-\d+")  # the reader names the range; the summary groups by cause
BRANCHES = required_branches("flight")  # what the chain may see: never the MC truth
CHAIN_FILE = "chain.yaml"


@dataclass(frozen=True)
class ReprocessConfig:
    """Arguments of one reprocessing job (the CLI's options)."""

    inputs: PathsOrGlob
    out: str
    alias: str = "production"
    runtime: Runtime = "tensorflow"
    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    batch_size: int = 512
    events_per_block: int = 2000
    overwrite: bool = False
    #: the chain's settings (reconstruction.config; `--chain FILE.yaml`, `--coarse-below`)
    chain: ChainConfig = field(default_factory=ChainConfig)

    def check(self) -> None:
        """Fail fast, before Ray or any read: inputs and `out` under the allowed storage
        (StorageNotAllowedError), the numbers in range."""

        inputs = [self.inputs] if isinstance(self.inputs, str | os.PathLike) else list(self.inputs)
        for path in inputs:
            check_job_paths(input=path)
        check_job_paths(out=self.out)
        if self.runtime not in RUNTIMES:
            raise InputError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        for name in ("actors", "batch_size", "events_per_block"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.gpus_per_actor < 0 or self.cpus_per_actor < 0:
            raise InputError("gpus_per_actor and cpus_per_actor must be >= 0")


@dataclass
class Progress:
    """What the driver has committed so far (for progress bars)."""

    files_done: int
    files_total: int
    events_done: int  # in committed files
    events_total: int
    events_seen: int = 0  # back from the actors in this run, committed or not


@dataclass
class ReprocessResult:
    summary: dict
    files_done_before: int
    files_processed: int
    seconds: float
    quarantine_path: str = ""


def file_key(path: str) -> str:
    """Output name of an input file: its stem (readable) plus a hash of its full path (unique)."""
    base = os.path.basename(path.rstrip("/"))
    stem = base[: -len(".root")] if base.endswith(".root") else base
    return f"{stem}-{hashlib.sha1(path.encode()).hexdigest()[:10]}"


def model_column(network: str) -> str:
    """Column of a network's model: named by its role, so flight and MC outputs share one schema."""
    return "model_" + network.removesuffix("-aligned").replace("-", "_")


def model_columns(versions: dict[str, str]) -> dict[str, str]:
    """{column: 'registered name/version'} (as in models:/NAME/VERSION) for one chain's versions."""
    cols = {model_column(n): f"{n}/{v}" for n, v in sorted(versions.items())}
    if len(cols) != len(versions):
        raise ReprocessError(f"two networks of the chain share a role: {sorted(versions)}")
    return cols


def pin_versions(alias: str, modes: Sequence[str]) -> dict[str, dict[str, str]]:
    """The registered versions `alias` resolves to, per data mode; RegistryError if any is missing.

    Resolved without loading a model, by the chain's rule (flight data: the `-aligned` BGO models
    where registered). Every actor checks that its loaded chain has exactly these versions.
    """

    return {mode: dict(chosen_models(alias, mode == "flight").values()) for mode in modes}


def recorded_chain(params: dict) -> ChainConfig:
    """The chain settings a job recorded in `_job.json` (a job of before the full record: the
    default chain with its `coarse_below_tev`)."""
    if "chain" in params:
        return chain_config_from_dict(params["chain"])
    return ChainConfig().with_coarse_below_tev(float(params.get("coarse_below_tev", "1")))


def _prepare_out(store: Store, params: dict, overwrite: bool) -> dict:
    """Check what `out` holds against this job; returns the params to record (modes merged)."""
    ledger = _ledger(store)
    if (previous := ledger.started()) is not None:
        settings = chain_config_from_dict(params["chain"]).differences(recorded_chain(previous))
        if previous["runtime"] != params["runtime"]:
            settings.insert(0, f"runtime {previous['runtime']} (now {params['runtime']})")
        shared = set(previous.get("versions", {})) & set(params["versions"])
        same_models = all(previous["versions"][m] == params["versions"][m] for m in shared)
        if not settings and same_models and not overwrite:
            return {**params, "versions": {**previous["versions"], **params["versions"]}}
        if not overwrite:
            changes = sorted(
                f"{m}: {net} {previous['versions'][m].get(net, '-')} -> {params['versions'][m].get(net, '-')}"
                for m in shared
                for net in set(previous["versions"][m]) | set(params["versions"][m])
                if previous["versions"][m].get(net) != params["versions"][m].get(net)
            )
            what = ", ".join(settings) if settings else f"other model versions ({'; '.join(changes)})"
            raise ReprocessInputError(
                f"{store.uri} holds outputs made with @{previous.get('alias')}, {what}: pass --overwrite "
                "to replace them, or choose another --out to keep both"
            )
        ledger.clear()
        for rel in (EVENTS_DIR, TMP_DIR):
            store.delete_dir(rel)
        for rel in (QUARANTINE, SUMMARY, CHAIN_FILE):
            if store.exists(rel):
                store.fs.delete_file(store.path(rel))
    elif any(name != TMP_DIR for name in _entries(store)):
        raise ReprocessInputError(
            f"{store.uri} is not empty and holds no reprocessing output: choose another --out"
        )
    return params


def _entries(store: Store) -> list[str]:

    if store.fs.get_file_info(store.root).type == pafs.FileType.NotFound:
        return []
    return [i.base_name for i in store.fs.get_file_info(pafs.FileSelector(store.root))]


def _ledger(store: Store) -> Ledger:
    return Ledger(store, JOB_FILE, MARKERS_DIR)


def committed_outputs(uri: str) -> dict[str, str]:
    """{input file: its events Parquet (a path in the output's store)} of every committed input of a
    reprocessing output `uri` that wrote events (the markers say which output holds which input)."""
    store = Store.open(uri)
    ledger = _ledger(store)
    if ledger.started() is None:
        raise ReprocessInputError(
            f"{uri}: not a reprocessing output (no {JOB_FILE}); run `dampeml reprocess`"
        )
    out = {}
    for unit in sorted(ledger.done()):
        marker = ledger.marker(unit)
        if marker.get("output"):
            out[marker["input"]] = store.path(marker["output"])
    return out


def remove_orphans(store: Store) -> list[str]:
    """Delete outputs without a marker (published by a job killed before writing the marker)."""
    markers = _ledger(store).done()
    orphans = [n for n in store.list(EVENTS_DIR, ".parquet") if n[: -len(".parquet")] not in markers]
    for name in orphans:
        store.fs.delete_file(store.path(EVENTS_DIR, name))
    return orphans


def commit_file(
    store: Store,
    info: EventFileInfo,
    table: pa.Table,
    versions: dict[str, str],
    output_columns: Sequence[str],
    duplicates: dict[int, tuple[str, int]] | None = None,
) -> dict:
    """Publish one input file's rows: its events Parquet (atomic), then its marker. Returns the marker.

    `duplicates` ({entry: (file, entry) of the kept copy}) are quarantined as DUPLICATE unless the
    reader already quarantined them for another reason; their lines name the kept copy either way.
    """
    key = file_key(info.path)
    table = table.sort_by("entry")
    entries = table.column("entry").to_numpy()
    if len(entries) != info.n_events or not np.array_equal(entries, np.arange(info.n_events)):
        raise ReprocessError(
            f"{info.path}: got {len(entries)} rows ({len(np.unique(entries))} distinct entries) for "
            f"{info.n_events} events: a bug in the pipeline, nothing of this file was written"
        )
    duplicates = duplicates or {}
    if duplicates:
        why = table.column("quarantine_reason").to_numpy(zero_copy_only=False).astype(object)
        repeat = np.zeros(len(why), dtype=bool)
        repeat[np.fromiter(duplicates, dtype=np.int64)] = True  # row i is entry i (checked above)
        why[repeat & (why == "")] = DUPLICATE
        column = table.schema.get_field_index("quarantine_reason")
        table = table.set_column(column, "quarantine_reason", pa.array(why, pa.string()))
    reasons = table.column("quarantine_reason")
    good = pc.equal(reasons, "")
    written = table.filter(good).select(["run_id", "event_id", *output_columns])
    for column, value in model_columns(versions).items():
        written = written.append_column(column, pa.array([value] * written.num_rows, pa.string()))
    output = None
    nbytes = 0
    if written.num_rows:
        output = f"{EVENTS_DIR}/{key}.parquet"
        nbytes = store.write_parquet(output, written)
    bad = table.filter(pc.invert(good)).select(["entry", "run_id", "event_id", "quarantine_reason"])
    quarantine = [
        {"file": info.path, "entry": e, "run_id": r, "event_id": i, "reason": why}
        | ({"duplicate_of": {"file": duplicates[e][0], "entry": duplicates[e][1]}} if e in duplicates else {})
        for e, r, i, why in zip(*(bad.column(c).to_pylist() for c in bad.column_names), strict=True)
    ]
    marker = {
        "input": info.path,
        "output": output,
        "mode": info.mode,
        "events": info.n_events,
        "written": written.num_rows,
        "quarantined": dict(Counter(q["reason"] for q in quarantine)),
        "quarantine_list": quarantine,
        "bytes": nbytes,
        "versions": versions,
        "committed": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    check_accounting(info.path, info.n_events, written=marker["written"], quarantined=len(quarantine))
    _ledger(store).commit(key, marker)
    return marker


def find_repeats(store: Store, plan: EventFilePlan, todo: list[EventFileInfo], fine: int) -> DuplicateScan:
    """The repeated identities of the `todo` files (see the module docstring for the rule).

    Committed files come first and keep every identity they hold except the entries their
    markers list as repeats; then the todo files in sorted path order.
    """
    waiting = {i.path for i in todo}
    done = sorted(i.path for i in plan.good if i.path not in waiting)
    skip: dict[str, set[int]] = {}
    for path in done:
        marker = _ledger(store).marker(file_key(path))
        skip[path] = {q["entry"] for q in marker["quarantine_list"] if "duplicate_of" in q}
    sizes = {i.path: i.n_events for i in plan.good}
    ranges = [(p, 0, sizes[p]) for p in [*done, *sorted(waiting)]]
    return scan_duplicates(ranges, skip, fine)


def _check_resources(cfg: ReprocessConfig) -> None:
    """Refuse a pool the cluster cannot hold: Ray would wait for it forever."""
    import ray

    have = ray.cluster_resources()
    need_cpu = cfg.actors * cfg.cpus_per_actor + 1  # + 1 for the read tasks
    if have.get("CPU", 0) < need_cpu:
        raise ReprocessInputError(
            f"{cfg.actors} actors x {cfg.cpus_per_actor} CPU plus the readers need {need_cpu:g} CPUs, "
            f"the Ray cluster has {have.get('CPU', 0):g}: use fewer --actors (or a larger --num-cpus locally)"
        )
    if cfg.gpus_per_actor and have.get("GPU", 0) < cfg.actors * cfg.gpus_per_actor:
        raise ReprocessInputError(
            f"{cfg.actors} actors x {cfg.gpus_per_actor} GPU need {cfg.actors * cfg.gpus_per_actor:g} GPUs, "
            f"the Ray cluster has {have.get('GPU', 0):g}: use --gpus-per-actor 0 or fewer --actors"
        )


def run_pipeline(
    cfg: ReprocessConfig,
    plan: EventFilePlan,
    versions: dict[str, dict[str, str]],
    on_file: Callable[[EventFileInfo, pa.Table], None],
    on_batch: Callable[[int], None] | None = None,
) -> None:
    """Stream the planned files through the actor pool; hand each complete file's rows to `on_file`."""
    import ray

    from dampeml.reconstruction.chain import OUTPUT_COLUMNS  # noqa: F401  (fail here, not in an actor)

    flight_files = [i.path for i in plan.good if i.mode == "flight"]
    ds = read_event_files(plan, events_per_block=cfg.events_per_block, on_bad_file="quarantine")
    ds = ds.map_batches(
        ChainPredictor,
        fn_constructor_kwargs={
            "alias": cfg.alias,
            "runtime": cfg.runtime,
            "config": cfg.chain,
            "versions": versions,
            "flight_files": flight_files,
            "branches": list(plan.branches),
            "tracking_uri": tracking_uri(),
            # a CPU actor's threads are its CPUs (none given: TensorFlow takes the whole node)
            "threads": 0 if cfg.gpus_per_actor else max(1, int(cfg.cpus_per_actor)),
        },
        compute=ray.data.ActorPoolStrategy(size=cfg.actors),
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
        num_cpus=cfg.cpus_per_actor,
        num_gpus=cfg.gpus_per_actor or None,
    )
    infos = {i.path: i for i in plan.good}
    parts: dict[str, list[pa.Table]] = {}
    counts: Counter = Counter()
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        if on_batch:
            on_batch(batch.num_rows)
        files = batch.column("source_file")
        for path in pc.unique(files).to_pylist():
            part = batch.filter(pc.equal(files, path))
            parts.setdefault(path, []).append(part)
            counts[path] += part.num_rows
            if counts[path] > infos[path].n_events:
                raise ReprocessError(f"{path}: more rows than events (a bug); nothing of it was written")
            if counts[path] == infos[path].n_events:
                on_file(infos[path], pa.concat_tables(parts.pop(path)))
    if parts:
        raise ReprocessError(f"the pipeline ended with incomplete files (a bug): {sorted(parts)}")


def write_summary(store: Store, plan: EventFilePlan, params: dict, run: dict) -> tuple[dict, list[dict]]:
    """summary.json and quarantine.jsonl from the markers of the planned files plus the bad files."""

    files, lines = [], []
    totals = {"files": 0, "unreadable_files": 0, "events": 0, "written": 0, "quarantined": 0}
    reasons: Counter = Counter()
    for info in plan.good:
        m = _ledger(store).marker(file_key(info.path))
        nq = sum(m["quarantined"].values())
        files.append(
            {k: m[k] for k in ("input", "output", "mode", "events", "written", "quarantined", "versions")}
            | {"status": "done"}
        )
        lines.extend(m["quarantine_list"])
        for why, k in m["quarantined"].items():
            reasons[_RANGE.sub("events A-B", why)] += k
        totals["files"] += 1
        totals["events"] += m["events"]
        totals["written"] += m["written"]
        totals["quarantined"] += nq
    for path, reason in plan.bad:
        files.append({"input": path, "output": None, "status": "unreadable", "reason": reason})
        lines.append({"file": path, "entry": None, "run_id": None, "event_id": None, "reason": reason})
        totals["unreadable_files"] += 1
    check_accounting(
        store.uri, totals["events"], written=totals["written"], quarantined=totals["quarantined"]
    )
    summary = {
        "out": store.uri,
        "alias": params["alias"],
        "runtime": params["runtime"],
        "coarse_below_tev": f"{chain_config_from_dict(params['chain']).coarse_below_tev:g}",
        "chain": params["chain"],
        "versions": params["versions"],
        "package_version": __version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": stdlib_platform.node(),
        "totals": totals,
        "quarantined_by_reason": dict(reasons.most_common()),
        "run": run,
        "files": files,
    }
    store.write_text(QUARANTINE, "".join(json.dumps(x) + "\n" for x in lines))
    store.write_json(SUMMARY, summary)
    return summary, lines


def reprocess(cfg: ReprocessConfig, progress: Callable[[Progress], None] | None = None) -> ReprocessResult:
    """Run (or finish) a reprocessing job; Ray must be initialized (`dampeml.runtime.init_ray`)."""
    cfg.check()
    t0 = time.perf_counter()
    plan = plan_event_files(cfg.inputs, branches=BRANCHES)
    # the optional branches every good file carries (the clusters' widths of version-3 files)
    plan = replace(plan, branches=readable_branches("flight", [set(i.branches) for i in plan.good]))
    modes = [m for m in MODES if any(i.mode == m for i in plan.good)] or ["mc"]  # check the alias anyway
    versions = pin_versions(cfg.alias, modes)  # RegistryError before any work
    _check_resources(cfg)
    params = {
        "alias": cfg.alias,
        "runtime": cfg.runtime,
        "chain": cfg.chain.as_dict(),
        "versions": versions,
    }
    store = Store.open(cfg.out)
    params = _prepare_out(store, params, cfg.overwrite)
    _ledger(store).start(params)
    store.write_text(CHAIN_FILE, cfg.chain.to_yaml())  # `--chain` of a job that reruns these outputs

    done = _ledger(store).done()
    todo = [i for i in plan.good if file_key(i.path) not in done]
    total_events = plan.n_events
    state = Progress(len(plan.good) - len(todo), len(plan.good), 0, total_events)
    state.events_done = total_events - sum(i.n_events for i in todo)
    if progress:
        progress(state)
    t_run = time.perf_counter()
    duplicate_scan = None  # nothing to do: nothing read
    if todo:
        scan = find_repeats(store, plan, todo, cfg.events_per_block)
        duplicate_scan = scan.report()

        def on_file(info: EventFileInfo, table: pa.Table) -> None:
            dups = scan.duplicates.get(info.path)
            commit_file(store, info, table, versions[info.mode], OUTPUT_COLUMNS, dups)
            state.files_done += 1
            state.events_done += info.n_events
            if progress:
                progress(state)

        def on_batch(rows: int) -> None:
            state.events_seen += rows
            if progress:
                progress(state)

        sub = EventFilePlan(todo, [], plan.branches, plan.bytes_per_event)
        needed = {m: v for m, v in versions.items() if any(i.mode == m for i in todo)}  # chains to load
        run_pipeline(cfg, sub, needed, on_file, on_batch)
    seconds = time.perf_counter() - t_run
    processed = sum(i.n_events for i in todo)
    run = {
        "files_done_before": len(plan.good) - len(todo),
        "files_processed": len(todo),
        "events_processed": processed,
        "pipeline_seconds": round(seconds, 3),  # including the actors' start (loading the models)
        "events_per_second": round(processed / seconds, 2) if processed and seconds > 0 else None,
        "actors": cfg.actors,
        "cpus_per_actor": cfg.cpus_per_actor,
        "gpus_per_actor": cfg.gpus_per_actor,
        "batch_size": cfg.batch_size,
        "duplicate_scan": duplicate_scan,  # inside pipeline_seconds; reads run_id and event_id only
        "total_seconds": None,
    }
    run["orphans_removed"] = remove_orphans(store)
    run["total_seconds"] = round(time.perf_counter() - t0, 3)
    summary, _ = write_summary(store, plan, params, run)
    store.delete_dir(TMP_DIR)  # attempt files of killed jobs (this job's were all moved into place)
    return ReprocessResult(
        summary, len(plan.good) - len(todo), len(todo), time.perf_counter() - t0, store.path(QUARANTINE)
    )
