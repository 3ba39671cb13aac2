"""Build a dataset: plan units, run them through a Ray Data pipeline, commit, write the manifest.

Each unit (a file's event range or a seeded simulation chunk) is read or simulated,
validated, selected, turned into features and targets, split by event identity, and
written as one Parquet shard per split; its accounting marker is written last. The
manifest is an aggregate of the markers, so it is always consistent with what exists.

Everything about the inputs is checked before anything is written at `out` (a glob that
matches nothing, flight files for a supervised spec, nothing readable, an input listed
twice), so a refused build leaves no folder that a rerun would mistake for a started one.
Repeated event identities (run_id, event_id) are found on the driver before the units run
(`find_unit_repeats`: the run_id and event_id of every planned event, read cheaply; linear,
its cost in the manifest's `duplicate_scan`): the first occurrence in unit order (committed
units first, then spec source order, files sorted) is kept, every later one is quarantined
as DUPLICATE, naming the kept copy.
"""

from __future__ import annotations

import bisect
import datetime as dt
import glob as globmod
import hashlib
import json
import os
import platform as stdlib_platform
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from dampeml import __version__
from dampeml.bookkeeping import check_accounting
from dampeml.datasets.process import build_ledger, process_unit
from dampeml.datasets.spec import DatasetSpec, FileSource, SimulationSource
from dampeml.datasets.split import SPLITS
from dampeml.datasets.units import BadFile, WorkUnit, plan_units, planned_particle_counts
from dampeml.detector.simulation import SIMULATION_VERSION
from dampeml.errors import InputError, JobError
from dampeml.io.datasource import DuplicateScan, EventIds, scan_duplicates
from dampeml.reconstruction.chain import (
    NETWORK_OF_FIELD,
    UPSTREAM_FIELDS,
    UPSTREAM_SETTINGS,
    Chain,
    chosen_models,
)
from dampeml.reconstruction.config import ChainConfig
from dampeml.registry.models import check_model_uri, list_versions
from dampeml.registry.tracking import tracking_uri
from dampeml.security import check_spec_storage, check_storage
from dampeml.storage import MANIFEST, QUARANTINE, TMP_DIR, Store

#: targets that only MC truth can give (today: every target, so every spec is supervised)
TRUTH_TARGETS = frozenset({"track", "hough_offsets", "inelastic", "particle", "energy"})


class DatasetBuildError(InputError):
    """A build refused before any work: sources that cannot make the dataset, or an --out that
    holds another dataset or one started otherwise (the message says what to change)."""


class DatasetJobError(JobError):
    """A build that ran but cannot be published: too much quarantined, or its accounting broken."""


@dataclass
class BuildSummary:
    uri: str
    units_total: int
    units_done_before: int
    manifest: dict


def _build_params(spec: DatasetSpec, limit_events: int | None, upstream: Upstream | None = None) -> dict:
    params = {
        "spec_hash": spec.spec_hash(),
        "limit_events": limit_events,
        "name": spec.name,
        "simulation_version": SIMULATION_VERSION,  # simulation sources make events with today's physics
    }
    if upstream:
        params["upstream_models"] = _versions(upstream)
        params["upstream_chain"] = upstream_settings(spec)
    return params


#: {ChainModels field: (registered name, version)} of a model-seeded build's upstream models
Upstream = dict[str, tuple[str, str]]


def _versions(upstream: Upstream) -> dict[str, str]:
    return {name: version for name, version in sorted(upstream.values())}


def upstream_chain_config(spec: DatasetSpec) -> ChainConfig:
    """The settings of the chain that seeds a model-seeded spec's RoIs (the defaults, with the
    coarse step everywhere when roi.coarse_everywhere)."""
    everywhere = spec.roi is not None and spec.roi.coarse_everywhere
    return ChainConfig().with_coarse_below_tev(float("inf")) if everywhere else ChainConfig()


def upstream_settings(spec: DatasetSpec, config: ChainConfig | None = None) -> dict:
    """The chain settings (of `config`, default: `upstream_chain_config`) that decide the track a
    model-seeded spec's RoIs are centred on ({} for other specs): a new default of the chain's
    refit changes the RoIs of a dataset seeded after it, so it changes that dataset's version."""
    if spec.roi is None or spec.roi.upstream is None:
        return {}
    every = (config or upstream_chain_config(spec)).as_dict()
    return {k: every[k] for k in UPSTREAM_SETTINGS[spec.roi.upstream]}


def dataset_version(
    spec: DatasetSpec, upstream: Upstream | None = None, chain: ChainConfig | None = None
) -> str:
    """`name@spec-hash`, plus `+simN` when the spec simulates its events (models trained on a
    dataset of other physics (`SIMULATION_VERSION`) then show a different dataset version), plus
    `+up<hash>` of the upstream model versions of a model-seeded RoI and the chain settings that
    place it (`upstream_settings`, of `chain` when given)."""
    version = f"{spec.name}@{spec.spec_hash()}"
    if any(s.type == "simulation" for s in spec.sources):
        version += f"+sim{SIMULATION_VERSION}"
    if upstream:
        canon = json.dumps(
            {"models": _versions(upstream), "chain": upstream_settings(spec, chain)}, sort_keys=True
        )
        version += f"+up{hashlib.sha256(canon.encode()).hexdigest()[:8]}"
    return version


class UnitProcessor:
    """A Ray Data actor of a model-seeded build: the upstream chain is loaded once per actor
    (each model through the safe loader, at the versions the driver resolved), then units run."""

    def __init__(self, spec_json: str, store_uri: str, context: dict, upstream: Upstream, tracking: str):
        os.environ["MLFLOW_TRACKING_URI"] = tracking  # actors may run where the driver's env is not

        self.spec = DatasetSpec.model_validate_json(spec_json)
        self.store = Store.open(store_uri)
        config = upstream_chain_config(self.spec)
        self.context = {**context, "upstream_chain": Chain.from_versions(upstream, config=config)}

    def __call__(self, row: dict) -> dict:
        acc = process_unit(WorkUnit(**row), self.spec, self.store, self.context)
        return {"accounting": json.dumps(acc)}


def run_units(
    units: list[WorkUnit],
    spec: DatasetSpec,
    store: Store,
    context: dict,
    on_done: Callable[[dict], None],
    num_cpus_per_unit: float = 1.0,
    upstream: Upstream | None = None,
) -> None:
    """Process units as a Ray Data pipeline: one row per unit in, one accounting row out.

    With `upstream` models (a model-seeded RoI) the units run in an actor pool that loads them once.
    """
    import ray

    spec_json = spec.model_dump_json()
    ds = ray.data.from_items([u.to_dict() for u in units], override_num_blocks=max(len(units), 1))
    # Ray Data reserves part of the CPUs and object store for each operator's outputs; a unit writes
    # its own shards and hands on one accounting row, so the reservation only held units back: 8 units
    # of 0.2 s on 4 CPUs took 1.27 s with it, 0.50 s without (benchmarks/README.md, "Scale"). The actor
    # pool's size bounds the units in flight; tasks are bounded by the task pool's size below.
    ds.context.op_resource_reservation_enabled = False
    if upstream:
        free = int(ray.available_resources().get("CPU", 1) // num_cpus_per_unit)
        actors = ds.map(
            UnitProcessor,
            fn_constructor_kwargs={
                "spec_json": spec_json,
                "store_uri": store.uri,
                "context": context,
                "upstream": upstream,
                "tracking": tracking_uri(),
            },
            compute=ray.data.ActorPoolStrategy(size=max(1, min(len(units), free))),
            num_cpus=num_cpus_per_unit,
        )
        for row in actors.iter_rows():
            on_done(json.loads(row["accounting"]))
        return

    def _process(row: dict) -> dict:
        acc = process_unit(
            WorkUnit(**row), DatasetSpec.model_validate_json(spec_json), Store.open(store.uri), context
        )
        return {"accounting": json.dumps(acc)}

    # without the reservation nothing else bounds them (all 500 units of a 1e7 build were submitted at
    # once): twice what the cluster's CPUs run now, a queue that keeps them busy and shows an
    # autoscaler the demand; never more than the units (Ray Data warns of a pool larger than its inputs)
    slots = max(1, min(len(units), int(2 * ray.cluster_resources().get("CPU", 1) // num_cpus_per_unit)))
    tasks = ray.data.TaskPoolStrategy(size=slots)
    for row in ds.map(_process, num_cpus=num_cpus_per_unit, compute=tasks).iter_rows():
        on_done(json.loads(row["accounting"]))


def check_build_inputs(
    spec: DatasetSpec,
    out_uri: str,
    spec_path: str | os.PathLike | None = None,
    upstream_alias: str | None = None,
    upstream_versions: Mapping[str, str] | None = None,
) -> Upstream:
    """Fail fast, before Ray or any write: the spec's file sources and `out_uri` are under the
    allowed storage (StorageNotAllowedError), and a model-seeded RoI's upstream models are
    registered at the alias (RegistryError saying what exists). Returns those models' versions
    ({} unless roi.source is 'model'), resolved now: an alias moved during the build changes nothing.
    `upstream_versions` ({registered name: version}, e.g. a pipeline's upstream steps) pins those
    networks instead of the alias."""

    check_spec_storage(spec, spec_path)
    check_storage(out_uri, what="--out")
    if spec.roi is None or spec.roi.source != "model":
        return {}
    assert spec.roi.upstream is not None  # guaranteed by the spec validator
    alias = upstream_alias or spec.roi.alias
    pinned = dict(upstream_versions or {})
    fields = UPSTREAM_FIELDS[spec.roi.upstream]
    at_alias = tuple(f for f in fields if NETWORK_OF_FIELD[f] not in pinned)
    chosen = chosen_models(alias, flight=False, only=at_alias) if at_alias else {}
    for f in fields:
        name = NETWORK_OF_FIELD[f]
        if name in pinned:
            check_model_uri(f"models:/{name}/{pinned[name]}")  # RegistryError saying what exists
            chosen[f] = (name, str(pinned[name]))
    return chosen


def plan_build(spec: DatasetSpec, limit_events: int | None) -> tuple[list[WorkUnit], list[BadFile]]:
    """The units and unreadable files of `spec`, or DatasetBuildError (one line: the input and
    what to do) for inputs no build should start from."""
    for i, src in enumerate(spec.sources):
        if isinstance(src, SimulationSource) and src.mode == "flight" and set(spec.targets) & TRUTH_TARGETS:
            raise DatasetBuildError(
                f"dataset {spec.name!r}: source {i + 1} simulates flight-like events, which carry no MC "
                f"truth, but its targets {spec.targets} need truth: set `mode: mc` in that source"
            )
    try:
        units, bad = plan_units(spec, limit_events)
    except FileNotFoundError as exc:
        raise DatasetBuildError(
            f"dataset {spec.name!r}: {exc} (relative globs start at {os.getcwd()}): fix the source's "
            "`glob`; nothing was written"
        ) from None
    flight = sorted({u.path for u in units if u.source == "file" and u.mode == "flight"})
    if flight and set(spec.targets) & TRUTH_TARGETS:
        more = f" (and {len(flight) - 1} more flight files)" if len(flight) > 1 else ""
        raise DatasetBuildError(
            f"{flight[0]}: a flight file (no MC truth){more}, but dataset {spec.name!r} ({spec.kind}) needs "
            f"truth for its targets {spec.targets}: build it from MC files only (narrow the source's glob)"
        )
    matched = Counter(
        path
        for src in spec.sources
        if isinstance(src, FileSource)
        for path in {os.path.realpath(m) for m in globmod.glob(src.glob)}
    )
    twice = sorted(p for p, n in matched.items() if n > 1)
    clash = sorted(k for k, n in Counter(u.unit_id for u in units).items() if n > 1)
    if twice or clash:
        what = (
            f"file {twice[0]} matches the globs of two sources"
            if twice
            else f"two sources make unit {clash[0]}"
        )
        raise DatasetBuildError(
            f"dataset {spec.name!r}: {what}: its events would be read twice; list each file, and each "
            "simulation seed and particle, in one source only"
        )
    if not units:
        reasons = f" ({bad[0].path}: {bad[0].reason})" if bad else ""
        raise DatasetBuildError(
            f"dataset {spec.name!r}: no readable events in its sources, {len(bad)} unreadable files"
            f"{reasons}: fix or replace the input files"
        )
    return units, bad


def _label(unit: WorkUnit) -> str:
    """Name of a unit's events in duplicate records: its file, or the unit for simulated events."""
    return unit.path if unit.source == "file" else unit.unit_id


def find_unit_repeats(store: Store, units: list[WorkUnit], done: set[str]) -> DuplicateScan:
    """Repeated identities among the planned events; committed units keep theirs (see the module
    docstring). Files: only run_id and event_id are read; simulated units' identities are known
    (run_id per unit, event_id = 0..n-1) and cost nothing to list."""
    order = [u for u in units if u.unit_id in done] + [u for u in units if u.unit_id not in done]
    skip: dict[str, set[int]] = {}
    for u in order:
        if u.unit_id not in done:
            break
        for q in build_ledger(store).marker(u.unit_id)["quarantine_list"]:
            repeats = [q["entry"]] if "duplicate_of" in q else q.get("duplicates", [])
            skip.setdefault(_label(u), set()).update(repeats)
    items: list = []
    for u in order:
        if u.source == "file":
            items.append((u.path, u.entry_start, u.entry_start + u.n_events))
        else:
            n = np.arange(u.n_events, dtype=np.int64)
            items.append(EventIds(u.unit_id, n, np.full(u.n_events, u.run_id, dtype=np.int64), n))
    return scan_duplicates(items, skip)


def _per_unit(units: list[WorkUnit], scan: DuplicateScan | None) -> dict[str, list]:
    """{unit_id: [[entry, kept label, kept entry], ...]} for the units that hold repeats."""
    out: dict[str, list] = {}
    if scan is None or not scan.duplicates:
        return out
    by_label = {label: sorted(found.items()) for label, found in scan.duplicates.items()}
    for u in units:
        found = by_label.get(_label(u), [])
        lo = bisect.bisect_left(found, (u.entry_start,))
        hi = bisect.bisect_left(found, (u.entry_start + u.n_events,))
        if hi > lo:
            out[u.unit_id] = [[e, lbl, k] for e, (lbl, k) in found[lo:hi]]
    return out


def build_dataset(
    spec: DatasetSpec,
    out_uri: str,
    limit_events: int | None = None,
    resume: bool = False,
    progress: Callable[[int, int], None] | None = None,
    spec_path: str | os.PathLike | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    upstream_alias: str | None = None,
    upstream_versions: Mapping[str, str] | None = None,
) -> BuildSummary:
    """Build (or resume) the dataset of `spec` at `out_uri`; returns the summary and manifest.

    The inputs are checked first (`check_build_inputs`); Ray is started
    (`dampeml.runtime.init_ray(ray_address, num_cpus)`) only then, if there is work and it is
    not running yet. A model-seeded RoI uses the models at `upstream_alias` (default: the spec's
    roi.alias) or the `upstream_versions` given; a build started from other versions of them is
    not resumed.
    """
    upstream = check_build_inputs(spec, out_uri, spec_path, upstream_alias, upstream_versions)
    store = Store.open(out_uri)
    params = _build_params(spec, limit_events, upstream)
    ledger = build_ledger(store)
    previous = ledger.started()
    started = previous is not None
    if started:
        if not resume:
            raise DatasetBuildError(
                f"{out_uri} already holds a dataset ({previous['name']}): "
                "pass --resume to finish it, or choose another --out"
            )
        before, now = previous.get("upstream_models"), params.get("upstream_models")
        if before != now:
            raise DatasetBuildError(
                f"{out_uri} was started with RoIs from the upstream models {before}, but they are now "
                f"{now}: a dataset is made by one set of models; choose another --out to build it "
                "with the new ones, or point the alias back to finish it"
            )
        before, now = previous.get("upstream_chain"), params.get("upstream_chain")
        if before != now:
            raise DatasetBuildError(
                f"{out_uri} was started with RoIs placed by the chain settings {before}, but this "
                f"version of dampeml places them with {now}: choose another --out to build it anew"
            )
        if previous != params:
            raise DatasetBuildError(
                f"{out_uri} was started with {previous}, not {params}: "
                "a resume must use the same spec, --limit-events and simulation version "
                "(docs/simulation.md): choose another --out to build it anew"
            )
    elif not store.is_empty():
        raise DatasetBuildError(f"{out_uri} is not empty and holds no dataset: choose another --out")

    units, bad_files = plan_build(spec, limit_events)  # DatasetBuildError here writes nothing
    done = ledger.done()
    todo = [u for u in units if u.unit_id not in done]
    scan = find_unit_repeats(store, units, done) if todo else None
    if not started:
        ledger.start(params)
    context = {"planned_particles": planned_particle_counts(units), "duplicates": _per_unit(units, scan)}
    if progress:
        progress(len(units) - len(todo), len(units))
    if todo:
        counter = {"n": len(units) - len(todo)}

        def on_done(_acc: dict) -> None:
            counter["n"] += 1
            if progress:
                progress(counter["n"], len(units))

        import ray

        if not ray.is_initialized():
            from dampeml.runtime import init_ray

            init_ray(ray_address, num_cpus)
        run_units(todo, spec, store, context, on_done, upstream=upstream)
    manifest = write_manifest(spec, store, units, bad_files, limit_events, scan, upstream)
    store.delete_dir(TMP_DIR)  # attempt files of killed runs (this run's were all moved into place)
    share = manifest["accounting"]["quarantined_share"]
    if share > spec.max_quarantine_fraction:
        raise DatasetJobError(
            f"{share:.2%} of the events read were quarantined, above the spec's limit "
            f"max_quarantine_fraction={spec.max_quarantine_fraction}: see {store.path(QUARANTINE)}"
        )
    return BuildSummary(out_uri, len(units), len(units) - len(todo), manifest)


def _upstream_records(upstream: Upstream) -> list[dict]:
    """Name, version and training run of each upstream model (the manifest's lineage)."""
    if not upstream:
        return []

    records = []
    for name, version in sorted(upstream.values()):
        info = next(v for v in list_versions(name) if v.version == version)
        records.append({"name": name, "version": version, "run_id": info.run_id})
    return records


def write_manifest(
    spec: DatasetSpec,
    store: Store,
    units: list[WorkUnit],
    bad_files: list[BadFile],
    limit_events: int | None,
    scan: DuplicateScan | None = None,
    upstream: Upstream | None = None,
) -> dict:
    """Aggregate every unit's marker into the manifest, plus the quarantine list beside it."""
    ledger = build_ledger(store)
    accs = [ledger.marker(u.unit_id) for u in units]
    per_split = {s: {"events": 0, "bytes": 0, "shards": 0} for s in SPLITS}
    per_particle: dict[str, Counter] = {s: Counter() for s in SPLITS}
    per_ebin: dict[str, Counter] = {s: Counter() for s in SPLITS}
    filtered: Counter = Counter()
    quarantined: Counter = Counter()
    quarantine_rows: list[dict] = []
    n_read = 0
    roi_made_by: dict = {}
    schema = None
    for acc in accs:
        n_read += acc["read"]
        filtered.update(acc["filtered"])
        quarantined.update(acc["quarantined"])
        quarantine_rows.extend(acc["quarantine_list"])
        roi_made_by.update(acc.get("upstream", {}))
        for s, sh in acc["shards"].items():
            per_split[s]["events"] += sh["events"]
            per_split[s]["bytes"] += sh["bytes"]
            per_split[s]["shards"] += 1
            per_particle[s].update(sh["particles"])
            per_ebin[s].update(sh["energy_bins"])
            if schema is None:
                schema = pq.read_schema(store.path(sh["file"]), filesystem=store.fs).to_string()
    for b in bad_files:
        quarantine_rows.append({"file": b.path, "event": None, "reason": f"unreadable file: {b.reason}"})
    written = sum(v["events"] for v in per_split.values())
    n_q = sum(quarantined.values())
    n_f = sum(filtered.values())
    check_accounting(store.uri, n_read, written=written, filtered=n_f, quarantined=n_q)
    total_bytes = sum(v["bytes"] for v in per_split.values())
    manifest = {
        "name": spec.name,
        "kind": spec.kind,
        "spec": spec.model_dump(mode="json"),
        "spec_hash": spec.spec_hash(),
        "dataset_version": dataset_version(spec, upstream),
        "package_version": __version__,
        "simulation_version": SIMULATION_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": stdlib_platform.node(),
        "limit_events": limit_events,
        "schema": schema,
        "splits": per_split,
        "particles": {s: dict(c) for s, c in per_particle.items()},
        "energy_bins": {s: dict(sorted(c.items())) for s, c in per_ebin.items()},
        "bytes_per_event": total_bytes / written if written else None,
        "roi_centre": roi_made_by,
        "upstream_models": _upstream_records(upstream or {}),
        "upstream_chain": upstream_settings(spec) if upstream else {},
        "accounting": {
            "read": n_read,
            "written": written,
            "filtered": dict(filtered),
            "quarantined": dict(quarantined),
            "unreadable_files": [b.path for b in bad_files],
            "quarantined_share": n_q / n_read if n_read else (1.0 if bad_files else 0.0),
        },
        "units": len(units),
        "duplicate_scan": scan.report() if scan is not None else None,  # None: nothing left to run
    }
    store.write_text(QUARANTINE, "".join(json.dumps(r) + "\n" for r in quarantine_rows))
    store.write_json(MANIFEST, manifest)
    return manifest
