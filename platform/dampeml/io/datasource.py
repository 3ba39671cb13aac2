"""Ray Data source for event files: one read task per event range, every event accounted for.

`read_event_files(paths)` gives a `ray.data.Dataset` with one row per event:

- the schema branches (`dampeml.io.schema`) as columns: fixed-size images (`bgo_energy` 14x22,
  `psd_energy` 2x41) as Ray tensor columns, the jagged `stk_*` branches as Arrow list columns,
  scalars as plain columns;
- `source_file` (str) and `entry` (int64, the entry number in that file): the row's identity,
  known even when nothing else about the event could be read;
- `quarantine_reason` (str): '' for a usable event, else why it must not be used.

Each file is split into ranges of `events_per_block` entries, one `ReadTask` each, so one big
file is read in parallel and never has to fit in one task's memory.

Bad input is never silently dropped (Ray's `DataContext.max_errored_blocks` stays 0: above 0 Ray
drops whole failed blocks without a trace). There are three kinds of problems:

1. Bad events in a readable range (NaNs, out-of-range STK fields; `root_reader.bad_events`): the
   row is kept with its reason in `quarantine_reason`, in every mode.
2. Bad files, found on the driver at planning time (`inspect_file` fails: junk, no tree, missing
   branches, empty file). With `on_bad_file="raise"` (default) planning raises `EventFileError`
   naming the file. With `on_bad_file="quarantine"` the file contributes no rows (how many events
   it held is unknown) and is listed in `EventFilePlan.bad` with its reason: plan first with
   `plan_event_files`, read the plan, and account for `plan.bad` in the dataset's report.
3. Unreadable ranges, found by a read task (truncated or corrupt baskets: the file's header says
   how many entries it holds, but some cannot be decoded). With "raise" the read task raises an
   `EventFileError` naming the file and the entry range, and Ray fails the dataset with it. With
   "quarantine" the range yields one row per claimed entry with only the identity (`source_file`,
   `entry`, `event_id` = entry, `run_id` from the file metadata) and the reason; the data columns
   are null there, so a quarantined row cannot be fed to a network by mistake (converting a null
   tensor to numpy fails).

Accounting in quarantine mode is then exact for what can be known:
`rows(quarantine_reason == '') + rows(quarantine_reason != '') == plan.n_events` (the entries that
the readable files' headers claim), and every input path is either in `plan.good` or `plan.bad`.

Repeated event identities (run_id, event_id) are not the reader's business (a read task sees one
range): `scan_duplicates` reads only those two branches of every planned range on the driver
(linear in time, bounded in memory: ranges are compared in groups that share runs) and names each
repeat and its kept copy by a priority order the caller chooses.

Paths must be readable from every Ray worker (a single node, or a shared filesystem).
Note: `Dataset.count()` is answered from the planned metadata (the entries each file claims)
without reading; materialize or iterate to find read errors.
"""

from __future__ import annotations

import functools
import glob
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import awkward as ak
import numpy as np
import pandas as pd
import pyarrow as pa
import ray
import uproot
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata
from ray.data.extensions import ArrowTensorArray

from dampeml.errors import InputError
from dampeml.io.root_reader import EventFileError, EventFileInfo, bad_events, inspect_file, read_events
from dampeml.io.schema import BRANCHES, BY_NAME, COUNTER, JAGGED, TREE_NAME, required_branches

OnBadFile = Literal["raise", "quarantine"]
ON_BAD_FILE = ("raise", "quarantine")
IDENTITY_COLUMNS = ("source_file", "entry", "quarantine_reason")
PathsOrGlob = str | os.PathLike | Sequence[str | os.PathLike]


class EventRangeError(EventFileError):
    """An entry range of a file could not be read. Picklable, so it crosses Ray's process boundary
    as itself (a plain `EventFileError` does not unpickle and arrives as `UnserializableException`).
    """

    def __init__(
        self, path: str | os.PathLike, problem: str, hint: str = "", entry_start: int = 0, entry_stop: int = 0
    ) -> None:
        super().__init__(path, problem, hint)
        self.entry_start, self.entry_stop = entry_start, entry_stop

    def __reduce__(self):
        return type(self), (self.path, self.problem, self.hint, self.entry_start, self.entry_stop)


@dataclass(frozen=True)
class EventFilePlan:
    """The files of a read, checked on the driver: what will be read and what was refused."""

    good: list[EventFileInfo]
    bad: list[tuple[str, str]]  # (path, reason): files that contribute no rows
    branches: tuple[str, ...]  # schema branches every row carries
    bytes_per_event: dict[str, float] = field(default_factory=dict)  # uncompressed, per good file

    @property
    def n_events(self) -> int:
        """Entries claimed by the good files: the row count of the dataset."""
        return sum(info.n_events for info in self.good)


def expand_paths(paths_or_glob: PathsOrGlob) -> list[str]:
    """Paths in the given order; glob patterns expanded (sorted). Raises if nothing is found."""
    items = [paths_or_glob] if isinstance(paths_or_glob, str | os.PathLike) else list(paths_or_glob)
    out: list[str] = []
    for item in items:
        s = os.fspath(item)
        if "://" not in s and glob.has_magic(s):
            matches = sorted(os.path.abspath(m) for m in glob.glob(s))
            if not matches:
                raise InputError(f"no files match {s!r}")
            out.extend(matches)
        else:
            out.append(s if "://" in s else os.path.abspath(s))  # workers may run in another directory
    if not out:
        raise InputError("no input files given")
    dupes = sorted(p for p, k in Counter(out).items() if k > 1)
    if dupes:
        raise InputError(f"files listed more than once (their events would be read twice): {dupes[:5]}")
    return out


def plan_event_files(
    paths_or_glob: PathsOrGlob | EventFilePlan,
    branches: Sequence[str] | None = None,
    max_workers: int = 8,
) -> EventFilePlan:
    """Inspect every file (in threads, on the caller's machine) and sort them into good and bad.

    `branches=None` reads all branches of the files' mode ('mc' or 'flight'); a mix of both modes
    then raises, since the rows would not share one schema: pass `branches` explicitly (e.g.
    `schema.required_branches('flight')`). A good file lacking a requested branch is bad.
    """
    if isinstance(paths_or_glob, EventFilePlan):
        return paths_or_glob
    paths = expand_paths(paths_or_glob)
    if branches is not None:
        unknown = [b for b in branches if b not in BY_NAME]
        if unknown or not branches:
            raise InputError(
                f"unknown branches {unknown}: choose from {[b.name for b in BRANCHES]}"
                if unknown
                else "branches must not be empty"
            )
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(paths)))) as pool:
        inspected = list(pool.map(_try_inspect, paths))
    good = [r for r in inspected if isinstance(r, EventFileInfo)]
    bad = [(p, r) for p, r in zip(paths, inspected, strict=True) if isinstance(r, str)]
    if branches is None:
        modes = sorted({info.mode for info in good})
        if len(modes) > 1:
            raise InputError(
                "the input mixes mc and flight files; pass branches= explicitly, e.g. "
                "required_branches('flight') for the branches both have"
            )
        branches = required_branches(modes[0]) if modes else required_branches("mc")
    branches = tuple(branches)
    kept, sizes = [], {}
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(good) or 1))) as pool:
        checked = list(pool.map(functools.partial(_branch_bytes, branches=branches), good))
    for info, result in zip(good, checked, strict=True):
        if isinstance(result, str):
            bad.append((info.path, result))
        else:
            kept.append(info)
            sizes[info.path] = result / info.n_events
    order = {p: i for i, p in enumerate(paths)}
    bad.sort(key=lambda pr: order[pr[0]])
    return EventFilePlan(kept, bad, branches, sizes)


def _try_inspect(path: str) -> EventFileInfo | str:
    try:
        return inspect_file(path)
    except EventFileError as exc:
        return exc.problem + (f" -- {exc.hint}" if exc.hint else "")
    except Exception as exc:  # anything else is a bad file too, not a crash of the whole plan
        return f"cannot inspect ({type(exc).__name__}: {exc})"


def _branch_bytes(info: EventFileInfo, branches: tuple[str, ...]) -> int | str:
    """Uncompressed bytes of the requested branches, or why the file cannot give them."""
    missing = [b for b in branches if b not in info.branches]
    if missing:
        return f"missing requested branches: {', '.join(missing)}"
    try:
        with uproot.open(info.path) as f:
            tree = f[TREE_NAME]
            names = list(branches) + ([COUNTER] if set(branches) & set(JAGGED) else [])
            return int(sum(tree[name].uncompressed_bytes for name in names))
    except Exception as exc:  # the file was readable a moment ago: report, don't crash planning
        return f"cannot read branch sizes ({type(exc).__name__}: {exc})"


#: reason of a quarantined repeat of an event identity; the line also names the kept copy
DUPLICATE = "duplicate (run_id, event_id): an earlier copy is kept"
IdRange = tuple[str, int, int]  # (path, entry_start, entry_stop)


@dataclass
class EventIds:
    """The identities of one range of events: `label` (a file path, or a name for simulated
    events), the entries, and their (run_id, event_id)."""

    label: str
    entries: np.ndarray
    run_id: np.ndarray
    event_id: np.ndarray


@dataclass
class DuplicateScan:
    """Result of `find_duplicates`: the repeats per label and what finding them cost."""

    duplicates: dict[str, dict[int, tuple[str, int]]]  # label -> {entry: (label, entry) of the kept copy}
    events: int  # identities compared
    unread: int  # entries whose identities could not be read (their readers quarantine them)
    seconds: float  # reading and comparing, on the caller's machine

    @property
    def n_duplicates(self) -> int:
        return sum(len(d) for d in self.duplicates.values())

    def report(self) -> dict:
        """What the summary and manifest record: the scan is linear in the events, and measured."""
        rate = round(self.events / self.seconds) if self.seconds > 0 else None
        return {
            "events": self.events,
            "unread": self.unread,
            "duplicates": self.n_duplicates,
            "seconds": round(self.seconds, 3),
            "events_per_second": rate,
        }


def read_ids(ranges: Sequence[IdRange], fine: int = 2000, max_workers: int = 8) -> list[list[EventIds]]:
    """(run_id, event_id) of each range (one list of pieces per range); only those two branches
    are read, on the caller's machine, in threads.

    Read in blocks of about 100k entries; a block that fails is read again in pieces of `fine`
    entries (the readers' range size, aligned like theirs), and pieces that still fail are left
    out: the read that needs them fails on them too and quarantines them, so none is kept unseen.
    """
    block = fine * max(1, 100_000 // fine)

    def read(tree, path: str, a: int, b: int) -> EventIds | None:
        try:
            ids = tree.arrays(["run_id", "event_id"], entry_start=a, entry_stop=b, library="np")
        except Exception:  # a corrupt basket
            return None
        if len(ids["run_id"]) != b - a:
            return None
        return EventIds(path, np.arange(a, b, dtype=np.int64), ids["run_id"], ids["event_id"])

    def one(rng: IdRange) -> list[EventIds]:
        path, start, stop = rng
        out: list[EventIds | None] = []
        try:
            with uproot.open(path) as f:
                tree = f[TREE_NAME]
                for a in range(start, stop, block):
                    b = min(a + block, stop)
                    got = read(tree, path, a, b)
                    if got is None:
                        edges = [a, *range((a // fine + 1) * fine, b, fine), b]
                        out += [read(tree, path, c, d) for c, d in zip(edges, edges[1:], strict=False)]
                    else:
                        out.append(got)
        except Exception:  # unreadable now: the planner or the read tasks report it
            return []
        return [x for x in out if x is not None]

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(ranges) or 1))) as pool:
        return list(pool.map(one, ranges))


def find_duplicates(ids: Sequence[EventIds], skip: dict[str, set[int]] | None = None) -> DuplicateScan:
    """Repeats of (run_id, event_id) within and across `ids`, which come in priority order: the
    first occurrence of an identity is kept, every later one is a duplicate of it.

    Hash-based (pandas.factorize), linear in the number of events. `skip[label]` are entries that do not
    count (already quarantined as duplicates in committed output, so never the kept copy).
    """

    t0 = time.perf_counter()
    skip = skip or {}
    labels, entries, runs, events = [], [], [], []
    for k, part in enumerate(ids):
        keep = np.ones(len(part.entries), dtype=bool)
        if skip.get(part.label):
            keep = ~np.isin(part.entries, np.fromiter(skip[part.label], dtype=np.int64))
        labels.append(np.full(int(keep.sum()), k, dtype=np.int32))
        entries.append(part.entries[keep])
        runs.append(np.asarray(part.run_id)[keep])
        events.append(np.asarray(part.event_id)[keep])
    n = int(sum(len(e) for e in entries))
    duplicates: dict[str, dict[int, tuple[str, int]]] = {}
    if n:
        # one id per identity, numbered by first appearance: three hash passes (pandas.factorize)
        run_code, _ = pd.factorize(np.concatenate(runs))
        event_code, event_values = pd.factorize(np.concatenate(events))
        pair, _ = pd.factorize(run_code.astype(np.int64) * len(event_values) + event_code)
        seen = np.maximum.accumulate(pair)
        new = np.ones(n, dtype=bool)
        new[1:] = seen[1:] > seen[:-1]  # the first occurrence of an identity raises the running max
        repeat = np.flatnonzero(~new)
        if len(repeat):
            first = np.flatnonzero(new)[pair[repeat]]
            label, entry = np.concatenate(labels), np.concatenate(entries)
            names = np.array([part.label for part in ids], dtype=object)
            owner = names[label[first]].tolist()
            by_part = np.argsort(label[repeat], kind="stable")  # group the repeats by part: linear
            parts, starts = np.unique(label[repeat][by_part], return_index=True)
            for k, idx in zip(parts, np.split(by_part, starts[1:]), strict=True):
                found = duplicates.setdefault(names[k], {})
                found.update(
                    zip(
                        entry[repeat[idx]].tolist(),
                        zip([owner[i] for i in idx], entry[first[idx]].tolist(), strict=True),
                        strict=True,
                    )
                )
    return DuplicateScan(duplicates, n, 0, time.perf_counter() - t0)


def scan_duplicates(
    items: Sequence[IdRange | EventIds],
    skip: dict[str, set[int]] | None = None,
    fine: int = 2000,
    batch_events: int = 200_000,
) -> DuplicateScan:
    """Find the repeats among `items` in priority order: file ranges (their identities are read
    here) or identities known without reading (e.g. of simulated events).

    Memory stays bounded whatever the number of events: two events can only be one if they share a
    run, so a first pass keeps only each item's run numbers, the items that share one are grouped,
    and the identities are read and compared a few groups at a time (about `batch_events` at once).
    Holding all of them at once took a 1e7-event build's driver to 1.6 GB (benchmarks/README.md, "Scale");
    batches of 1e6 events still added 110-160 MB to its peak at 1e6-1e7 events, batches of 2e5 add
    36-55 MB for 4% more scan time at 1e7 (a scan of 1e5 events or fewer is one batch, as before).
    """
    t0 = time.perf_counter()
    sizes = [len(x.entries) if isinstance(x, EventIds) else x[2] - x[1] for x in items]
    groups = [list(range(len(items)))]  # all at once when they fit: the identities are read once
    if sum(sizes) > batch_events:
        runs = [np.unique(x.run_id) if isinstance(x, EventIds) else np.zeros(0, np.int64) for x in items]
        ranges = [[i] for i, x in enumerate(items) if not isinstance(x, EventIds)]
        for batch in _batches(ranges, sizes, batch_events):
            for i, pieces in zip(batch, read_ids([items[j] for j in batch], fine), strict=True):
                if pieces:
                    runs[i] = np.unique(np.concatenate([q.run_id for q in pieces]))
        groups = _run_groups(runs)
    duplicates: dict[str, dict[int, tuple[str, int]]] = {}
    compared = read = 0
    for batch in _batches(groups, sizes, batch_events):
        pieces = iter(read_ids([items[i] for i in batch if not isinstance(items[i], EventIds)], fine))
        ids: list[EventIds] = []
        for i in batch:
            ids += [items[i]] if isinstance(items[i], EventIds) else next(pieces)
        read += sum(len(x.entries) for x in ids)
        scan = find_duplicates(ids, skip)
        compared += scan.events
        for label, found in scan.duplicates.items():
            duplicates.setdefault(label, {}).update(found)
    return DuplicateScan(duplicates, compared, sum(sizes) - read, time.perf_counter() - t0)


def _run_groups(runs: list[np.ndarray]) -> list[list[int]]:
    """The items that share a run number (directly or through others), as lists of item indices in
    priority order, ordered by their first item."""
    parent = list(range(len(runs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[int, int] = {}
    for i, item_runs in enumerate(runs):
        for run in item_runs.tolist():
            a, b = root(i), root(first.setdefault(run, i))
            parent[max(a, b)] = min(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(len(runs)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _batches(groups: list[list[int]], sizes: list[int], limit: int) -> Iterator[list[int]]:
    """Whole groups, joined until a batch holds `limit` events; each batch in priority order."""
    batch: list[int] = []
    n = 0
    for group in groups:
        batch += group
        n += sum(sizes[i] for i in group)
        if n >= limit:
            yield sorted(batch)
            batch, n = [], 0
    if batch:
        yield sorted(batch)


def arrow_schema(branches: Sequence[str]) -> pa.Schema:
    """The Arrow schema of the rows: branches in the order given, then the identity columns."""
    fields = []
    for name in branches:
        b = BY_NAME[name]
        dtype = np.dtype(b.dtype)
        if b.shape:
            typ = ArrowTensorArray.from_numpy(np.zeros((1, *b.shape), dtype)).type
        elif b.jagged:
            typ = pa.list_(pa.from_numpy_dtype(dtype))
        else:
            typ = pa.from_numpy_dtype(dtype)
        fields.append(pa.field(name, typ))
    fields += [
        pa.field("source_file", pa.string()),
        pa.field("entry", pa.int64()),
        pa.field("quarantine_reason", pa.string()),
    ]
    return pa.schema(fields)


def events_to_table(events: dict, source_file: str, entry_start: int, schema: pa.Schema) -> pa.Table:
    """`read_events` output (one range of one file) as an Arrow table of `schema`."""
    n = len(next(iter(events.values())))
    reasons = bad_events(events)
    columns = []
    for fld in schema:
        name = fld.name
        if name == "source_file":
            col = pa.array(np.full(n, source_file, dtype=object), pa.string())
        elif name == "entry":
            col = pa.array(np.arange(entry_start, entry_start + n, dtype=np.int64))
        elif name == "quarantine_reason":
            col = pa.array(reasons.astype(str), pa.string())
        elif name in JAGGED:
            col = _list_array(events[name], fld.type)
        elif BY_NAME[name].shape:
            col = ArrowTensorArray.from_numpy(np.ascontiguousarray(events[name], dtype=BY_NAME[name].dtype))
        else:
            col = pa.array(np.asarray(events[name], dtype=BY_NAME[name].dtype), fld.type)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


def _list_array(values: ak.Array, typ: pa.ListType) -> pa.ListArray:
    counts = ak.to_numpy(ak.num(values, axis=1)).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int32)
    flat = ak.to_numpy(ak.flatten(values, axis=1)).astype(typ.value_type.to_pandas_dtype())
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, typ.value_type))


def quarantine_table(
    info: EventFileInfo, entry_start: int, entry_stop: int, reason: str, schema: pa.Schema
) -> pa.Table:
    """Rows for entries that could not be read: identity and reason, data columns null."""
    n = entry_stop - entry_start
    entries = np.arange(entry_start, entry_stop, dtype=np.int64)
    run_id = info.metadata.get("run_id")
    if not isinstance(run_id, int) or isinstance(run_id, bool) or not -(2**63) <= run_id < 2**63:
        run_id = None  # metadata is input too: a bad run_id leaves the column null, never fails the read
    columns = []
    for fld in schema:
        if fld.name == "source_file":
            col = pa.array(np.full(n, info.path, dtype=object), pa.string())
        elif fld.name in ("entry", "event_id"):
            col = pa.array(entries, fld.type)
        elif fld.name == "run_id" and run_id is not None:
            col = pa.array(np.full(n, run_id, dtype=np.int64), fld.type)
        elif fld.name == "quarantine_reason":
            col = pa.array(np.full(n, reason, dtype=object), pa.string())
        else:
            col = pa.nulls(n, fld.type)
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


def read_range(
    info: EventFileInfo,
    entry_start: int,
    entry_stop: int,
    branches: tuple[str, ...],
    schema: pa.Schema,
    on_bad_file: OnBadFile,
) -> Iterator[pa.Table]:
    """Body of one read task: entries [entry_start, entry_stop) of one file as one table."""
    try:
        events = read_events(info.path, entry_start, entry_stop, branches=list(branches), info=info)
        table = events_to_table(events, info.path, entry_start, schema)
        if table.num_rows != entry_stop - entry_start:
            raise EventFileError(
                info.path,
                f"events {entry_start}-{entry_stop} gave {table.num_rows} rows "
                f"instead of {entry_stop - entry_start}",
                "regenerate the file",
            )
    except Exception as exc:
        if isinstance(exc, EventFileError):  # from read_events: names the range already
            problem, hint = exc.problem, exc.hint
        else:
            problem = f"cannot convert events {entry_start}-{entry_stop} ({type(exc).__name__}: {exc})"
            hint = "report this as a bug"
        if on_bad_file != "quarantine":
            raise EventRangeError(info.path, problem, hint, entry_start, entry_stop) from None
        reason = problem
        table = quarantine_table(info, entry_start, entry_stop, reason, schema)
    yield table


class EventFileDatasource(Datasource):
    """Ray Data source over DAMPE event files; see the module docstring for the row contract.

    `paths` is a path, a glob, a list of them, or an `EventFilePlan` from `plan_event_files`.
    Planning (inspecting every file) happens once, here, on the driver; `plan`, `bad_files` and
    `n_events` are the accounting a caller needs.
    """

    def __init__(
        self,
        paths: PathsOrGlob | EventFilePlan,
        events_per_block: int = 2000,
        branches: Sequence[str] | None = None,
        on_bad_file: OnBadFile = "raise",
    ) -> None:
        super().__init__()
        if on_bad_file not in ON_BAD_FILE:
            raise InputError(f"on_bad_file must be one of {ON_BAD_FILE}, got {on_bad_file!r}")
        if events_per_block < 1:
            raise InputError(f"events_per_block must be >= 1, got {events_per_block}")
        if isinstance(paths, EventFilePlan) and branches is not None and tuple(branches) != paths.branches:
            raise InputError("branches differ from the plan's: plan with the branches you want to read")
        self.plan = plan_event_files(paths, branches)
        if self.plan.bad and on_bad_file == "raise":
            path, reason = self.plan.bad[0]
            more = f" (and {len(self.plan.bad) - 1} more bad files)" if len(self.plan.bad) > 1 else ""
            raise EventFileError(
                path, f"{reason}{more}; on_bad_file='quarantine' reads the rest and reports it"
            )
        self.events_per_block = events_per_block
        self.on_bad_file = on_bad_file
        self.branches = self.plan.branches
        self.schema = arrow_schema(self.branches)

    @property
    def bad_files(self) -> list[tuple[str, str]]:
        return self.plan.bad

    @property
    def n_events(self) -> int:
        return self.plan.n_events

    def get_name(self) -> str:
        return "EventFiles"

    def ranges(self) -> Iterable[tuple[EventFileInfo, int, int]]:
        for info in self.plan.good:
            for start in range(0, info.n_events, self.events_per_block):
                yield info, start, min(start + self.events_per_block, info.n_events)

    def _size(self, info: EventFileInfo, n: int) -> int:
        # identity columns: path + entry + empty reason, roughly
        return int(n * (self.plan.bytes_per_event.get(info.path, 0.0) + len(info.path) + 16))

    def estimate_inmemory_data_size(self) -> int:
        return sum(self._size(info, info.n_events) for info in self.plan.good)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context=None
    ) -> list[ReadTask]:
        # One task per range, whatever `parallelism` asks: ranges are the unit of failure and of
        # accounting, and their size is the user's choice (events_per_block).
        tasks = []
        for info, start, stop in self.ranges():
            meta = BlockMetadata(
                num_rows=stop - start,
                size_bytes=self._size(info, stop - start),
                input_files=(info.path,),
                exec_stats=None,
            )
            fn = functools.partial(
                read_range, info, start, stop, self.branches, self.schema, self.on_bad_file
            )
            tasks.append(ReadTask(fn, meta, schema=self.schema, per_task_row_limit=per_task_row_limit))
        return tasks


def read_event_files(
    paths_or_glob: PathsOrGlob | EventFilePlan,
    events_per_block: int = 2000,
    branches: Sequence[str] | None = None,
    on_bad_file: OnBadFile = "raise",
    **read_kwargs,
) -> ray.data.Dataset:
    """Read event files into a Dataset, one row per event (see the module docstring).

    For quarantine accounting, plan first and keep the plan:
    `plan = plan_event_files(paths); ds = read_event_files(plan, on_bad_file="quarantine")`;
    `plan.bad` lists the files that gave no rows, `plan.n_events` is the dataset's row count.
    `read_kwargs` go to `ray.data.read_datasource` (e.g. `num_cpus`, `concurrency`).
    """
    max_errored = ray.data.DataContext.get_current().max_errored_blocks
    if max_errored != 0:
        raise ValueError(
            f"DataContext.max_errored_blocks is {max_errored}: Ray would drop failed blocks "
            "without a trace; keep it 0 and use on_bad_file='quarantine'"
        )
    source = EventFileDatasource(paths_or_glob, events_per_block, branches, on_bad_file)
    return ray.data.read_datasource(source, **read_kwargs)
