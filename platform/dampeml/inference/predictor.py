"""The Ray Data actor that runs the reconstruction chain on batches of event rows.

One `ChainPredictor` per actor: its chains are loaded once, in `__init__`, from the registry alias,
and must resolve to the versions the driver pinned before the job started (an alias moved in the
middle of a job would otherwise mix model versions in one output). Rows arrive as Arrow tables
from `dampeml.io.datasource` (one row per event, `quarantine_reason` set for bad events and for
unreadable ranges, whose data columns are null); only good rows reach the chain. Each output row
carries the identity, the quarantine reason and the chain's outputs (null for quarantined rows).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

import awkward as ak
import numpy as np
import pyarrow as pa

from dampeml.errors import InputError, JobError
from dampeml.io.schema import BY_NAME, JAGGED
from dampeml.reconstruction.chain import OUTPUT_COLUMNS, Chain
from dampeml.reconstruction.config import ChainConfig

IDENTITY = ("source_file", "entry", "run_id", "event_id", "quarantine_reason")
STRING_OUTPUTS = ("bgo_model",)
INTEGER_OUTPUTS = ("n_track_hits", "axis_seed")
MODES = ("mc", "flight")


class ReprocessError(JobError):
    """The reprocessing job cannot go on (an alias moved during the job, broken accounting)."""


class ReprocessInputError(InputError):
    """Reprocessing refused before any work: --out holds other outputs, or the pool does not fit."""


def output_type(column: str) -> pa.DataType:
    """Storage type of a chain output: float32 is ample for mm, rad and scores."""
    if column in STRING_OUTPUTS:
        return pa.string()
    if column in INTEGER_OUTPUTS:
        return pa.int32()
    return pa.float32()


def output_schema(output_columns: Sequence[str]) -> pa.Schema:
    """Schema of the predictor's rows: identity, reason, then the chain's outputs."""
    ident = [
        pa.field("source_file", pa.string()),
        pa.field("entry", pa.int64()),
        pa.field("run_id", pa.int64()),
        pa.field("event_id", pa.int64()),
        pa.field("quarantine_reason", pa.string()),
    ]
    return pa.schema(ident + [pa.field(c, output_type(c)) for c in output_columns])


def table_to_events(table: pa.Table, branches: Sequence[str]) -> dict:
    """Arrow rows from the event-file source as `read_events` gives them: numpy and awkward arrays."""

    events: dict = {}
    for name in branches:
        col = table.column(name).combine_chunks()
        if name in JAGGED:
            offsets = np.asarray(col.offsets.to_numpy(), dtype=np.int64)
            values = col.values.to_numpy(zero_copy_only=False)
            events[name] = ak.Array(
                ak.contents.ListOffsetArray(ak.index.Index64(offsets), ak.contents.NumpyArray(values))
            )
        elif BY_NAME[name].shape:
            events[name] = np.asarray(col.to_numpy(), dtype=BY_NAME[name].dtype)
        else:
            events[name] = col.to_numpy(zero_copy_only=False).astype(BY_NAME[name].dtype, copy=False)
    return events


class ChainPredictor:
    """Callable class for `Dataset.map_batches(..., compute=ActorPoolStrategy(size=n))`."""

    def __init__(
        self,
        alias: str,
        runtime: str,
        versions: Mapping[str, Mapping[str, str]],
        flight_files: Sequence[str],
        branches: Sequence[str],
        tracking_uri: str | None = None,
        config: ChainConfig | None = None,
        threads: int = 0,
    ) -> None:
        if tracking_uri:  # actors may run where the driver's environment is not
            os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
        import dampeml  # noqa: F401  (tf-keras before TensorFlow)

        if threads > 0:  # the actor's CPUs, not the node's: actors side by side must not oversubscribe it
            import tensorflow as tf  # heavy: only in the actor

            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)

        self.columns = tuple(OUTPUT_COLUMNS)
        self.schema = output_schema(self.columns)
        self.branches = tuple(branches)
        self.flight_files = frozenset(flight_files)
        self.chains = {}
        for mode, pinned in versions.items():
            chain = Chain.from_registry(
                alias=alias, flight=mode == "flight", runtime=runtime, config=config, onnx_threads=threads
            )
            got = {k: str(v) for k, v in chain.versions.items()}
            if got != dict(pinned):
                raise ReprocessError(
                    f"@{alias} now resolves to {got} for {mode} data, not {dict(pinned)} as when the job "
                    "started (an alias was moved during the job): rerun the job"
                )
            self.chains[mode] = chain
        self.seconds = 0.0

    def __call__(self, batch: pa.Table) -> pa.Table:
        t0 = time.perf_counter()
        n = batch.num_rows
        reasons = batch.column("quarantine_reason").to_numpy(zero_copy_only=False)
        good = reasons == ""
        flight = np.isin(batch.column("source_file").to_numpy(zero_copy_only=False), list(self.flight_files))
        outputs: dict[str, np.ndarray] = {}
        for mode, chain in self.chains.items():
            sel = good & (flight if mode == "flight" else ~flight)
            if not sel.any():
                continue
            idx = np.flatnonzero(sel)
            result = chain.run(table_to_events(batch.take(pa.array(idx)), self.branches))
            for c in self.columns:
                value = np.asarray(result[c])
                if len(value) != len(idx):
                    raise ReprocessError(f"the chain gave {len(value)} values of {c} for {len(idx)} events")
                if c not in outputs:
                    outputs[c] = np.empty(n, dtype=object if c in STRING_OUTPUTS else value.dtype)
                outputs[c][idx] = value
        if good.any() and (missing := [m for m in ("mc", "flight") if m not in self.chains]):
            unserved = good & (flight if "flight" in missing else ~flight)
            if unserved.any():
                raise ReprocessError(f"no chain loaded for {missing} files: a bug in the job's planning")
        arrays = [batch.column(c).combine_chunks().cast(self.schema.field(c).type) for c in IDENTITY]
        mask = ~good
        for c in self.columns:
            typ = output_type(c)
            if c in outputs:
                values = outputs[c]
                if c in STRING_OUTPUTS:
                    arr = pa.array(np.where(good, values, None).tolist(), typ)
                else:
                    values = values.astype(typ.to_pandas_dtype())
                    # a value the chain could not give (no hit on the track: no charge) is null, not
                    # NaN, so that SQL and dataframe tools skip it (avg, count) instead of returning NaN
                    missing = mask | np.isnan(values) if values.dtype.kind == "f" else mask
                    arr = pa.array(values, typ, mask=missing)
            else:
                arr = pa.nulls(n, typ)
            arrays.append(arr)
        self.seconds += time.perf_counter() - t0
        return pa.Table.from_arrays(arrays, schema=self.schema)
