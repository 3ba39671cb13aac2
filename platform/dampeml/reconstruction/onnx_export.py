"""Export a network to ONNX with tf2onnx, check it against TensorFlow, run it with onnxruntime.

Any registered network (`models:/NAME@ALIAS`, `models:/NAME/VERSION`) or in-memory tf-keras
model converts; the conversion is only trusted after a numerical parity check: the same inputs
through both runtimes, max |TF - ONNX| reported and required to stay below
`atol + rtol * max |TF|` (float32 round-off of reordered sums, ~1e-5 of the output scale), as
CTLearn, weaver-core and salt check their exports. A failed check raises OnnxParityError.

tf2onnx has no converter for TensorFlow's Log1p (the HAMF variable transform uses
tf.math.log1p); it is rewritten as Log(1 + x), identical in float32 for the transform's
inputs (>= 0 and not tiny: energies, counts, layer indices).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dampeml.errors import JobError
from dampeml.registry.models import load_model

#: ONNX opset: 17 is supported by every onnxruntime >= 1.11 and covers all our layers.
OPSET = 17
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-5


class OnnxParityError(JobError):
    """The ONNX model's outputs differ from TensorFlow's beyond the tolerance."""


@dataclass(frozen=True)
class OnnxExport:
    """A converted network: the serialized ONNX model and how it compared with TensorFlow."""

    onnx: bytes
    input_names: tuple[str, ...]
    output_name: str
    max_abs_diff: float
    tolerance: float
    n_checked: int
    source: str

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.onnx)
        return path


def _log1p_handler(ctx, node, name, args):  # tf2onnx custom-op handler signature
    """Log1p(x) -> Log(Add(x, 1))."""
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype=dtype))
    add = ctx.make_node("Add", [node.input[0], one.output[0]], op_name_scope=node.name)
    ctx.replace_input(node, node.input[0], add.output[0], 0)
    node.type = "Log"
    return node


def _input_specs(model: Any) -> list:
    import tensorflow as tf

    return [
        tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=n)
        for t, n in zip(model.inputs, model.input_names, strict=True)
    ]


def to_onnx(model: Any, opset: int = OPSET) -> bytes:
    """The serialized ONNX model of a tf-keras model (batch dimension left free)."""
    import tf2onnx

    proto, _ = tf2onnx.convert.from_keras(
        model,
        input_signature=_input_specs(model),
        opset=opset,
        custom_op_handlers={"Log1p": (_log1p_handler, [])},
    )
    return proto.SerializeToString()


def session(onnx: bytes | str | Path, threads: int = 0) -> Any:
    """An onnxruntime CPU session; `threads` > 0 fixes its intra-op threads (1 for per-core rates)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = onnx if isinstance(onnx, bytes) else str(onnx)
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def example_inputs(model: Any, n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs of the model's shapes and dtypes: uint8 images over 0..255, floats in [0, 1).

    Hough images of real events are sparse; uniform pixels light every filter and so are the
    harsher test of the arithmetic. Pass real inputs to :func:`export` where they exist.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for t, name in zip(model.inputs, model.input_names, strict=True):
        shape = (n, *t.shape[1:])
        dtype = t.dtype.as_numpy_dtype
        if np.issubdtype(dtype, np.integer):
            out[name] = rng.integers(0, 256, shape).astype(dtype)
        else:
            out[name] = rng.random(shape).astype(dtype)
    return out


def _keras_predict(model: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    x = inputs[model.input_names[0]] if len(model.inputs) == 1 else inputs
    return np.asarray(model.predict_on_batch(x))


def parity(
    model: Any,
    onnx: bytes,
    inputs: dict[str, np.ndarray] | None = None,
    atol: float = PARITY_ATOL,
    rtol: float = PARITY_RTOL,
    source: str = "model",
) -> tuple[float, float]:
    """(max |TF - ONNX|, tolerance) on `inputs` (random ones by default); OnnxParityError above it."""
    inputs = inputs if inputs is not None else example_inputs(model)
    ref = _keras_predict(model, inputs)
    sess = session(onnx)
    got = sess.run(None, {i.name: inputs[i.name] for i in sess.get_inputs()})[0]
    if got.shape != ref.shape:
        raise OnnxParityError(f"{source}: ONNX output shape {got.shape} != TensorFlow's {ref.shape}")
    diff = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
    tolerance = atol + rtol * float(np.max(np.abs(ref))) if ref.size else atol
    if not diff <= tolerance:  # NaN fails too
        raise OnnxParityError(
            f"{source}: ONNX differs from TensorFlow by {diff:.3g} (tolerance {tolerance:.3g}); "
            "do not use this export (check the tf2onnx and onnxruntime versions)"
        )
    return diff, tolerance


def export(
    source: str | Any,
    path: str | Path | None = None,
    inputs: dict[str, np.ndarray] | None = None,
    atol: float = PARITY_ATOL,
    rtol: float = PARITY_RTOL,
    opset: int = OPSET,
) -> OnnxExport:
    """Convert `source` (a registry URI or a tf-keras model) to ONNX, check parity, save to `path`."""
    if isinstance(source, str):
        model, label = load_model(source), source
    else:
        model, label = source, getattr(source, "name", "model")
    onnx = to_onnx(model, opset)
    inputs = inputs if inputs is not None else example_inputs(model)
    diff, tolerance = parity(model, onnx, inputs, atol, rtol, source=label)
    result = OnnxExport(
        onnx=onnx,
        input_names=tuple(model.input_names),
        output_name=model.output_names[0],
        max_abs_diff=diff,
        tolerance=tolerance,
        n_checked=len(next(iter(inputs.values()))),
        source=label,
    )
    if path is not None:
        result.save(path)
    return result
