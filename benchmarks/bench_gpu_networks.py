"""The chain's networks on a GPU against one CPU core: how many cores does one GPU replace?

Two steps, because the GPU machine has PyTorch and onnxruntime but no TensorFlow:

    # here (TensorFlow): every catalog network of the given presets, untrained, to ONNX,
    # each checked against TensorFlow (reconstruction.onnx_export.export)
    .venv/bin/python benchmarks/bench_gpu_networks.py export --out gpu-bench --presets small full

    # on the GPU machine: onnxruntime on the CPU (1 thread, and all cores) against the same
    # graphs converted to PyTorch (onnx2torch) on the GPU, fp32 and TF32, side by side
    python3 benchmarks/bench_gpu_networks.py run gpu-bench --batch 1024

The GPU rate is that of the ONNX graph run by PyTorch, not of the reprocessing job's
TensorFlow actors (the GPU machine has no TensorFlow): it says what a GPU worker could give
for the networks, which are ~97% of the full chain's time on a CPU (`bench_chain.py`). Inputs
are random (uint8 images over 0..255): no early exits, so the cost does not depend on them.
Each PyTorch output is compared with onnxruntime's on the same batch.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

INDEX = "index.json"


def export(out: Path, presets: list[str]) -> None:
    import dampeml  # noqa: F401  (tf-keras before TensorFlow)
    from dampeml.models.catalog import NETWORK_NAMES, build
    from dampeml.reconstruction.onnx_export import export as to_onnx

    out.mkdir(parents=True, exist_ok=True)
    index = []
    for preset in presets:
        for name in NETWORK_NAMES:
            model = build(name, preset=preset)
            path = out / f"{name}-{preset}.onnx"
            e = to_onnx(model, path)
            inputs = [
                {"name": n, "shape": [int(d) for d in t.shape[1:]], "dtype": t.dtype.as_numpy_dtype.__name__}
                for n, t in zip(model.input_names, model.inputs, strict=True)
            ]
            index.append({"network": name, "preset": preset, "file": path.name, "inputs": inputs})
            print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB, parity {e.max_abs_diff:.2g}")
    (out / INDEX).write_text(json.dumps(index, indent=1))


def _inputs(spec: list[dict], n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for i in spec:
        shape, dtype = (n, *i["shape"]), np.dtype(i["dtype"])
        out[i["name"]] = (
            rng.integers(0, 256, shape).astype(dtype)
            if np.issubdtype(dtype, np.integer)
            else rng.random(shape).astype(dtype)
        )
    return out


def _best_rate(fn, n: int, repeats: int, min_seconds: float = 0.5) -> float:
    """Events per second of `fn` (which handles `n` events), best of `repeats` timed loops."""
    fn()  # warm-up: graph optimisation, kernel selection, allocations
    best = np.inf
    for _ in range(repeats):
        loops, t0 = 0, time.perf_counter()
        while True:
            fn()
            loops += 1
            dt = time.perf_counter() - t0
            if dt >= min_seconds:
                break
        best = min(best, dt / loops)
    return n / best


def _time_network(folder: Path, row: dict, batch: int, cpu_batch: int, repeats: int) -> dict[str, float]:
    """Events per second of one network in each runtime, and max |PyTorch GPU - onnxruntime|."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx2torch import convert

    path = str(folder / row["file"])
    cpu_in = _inputs(row["inputs"], cpu_batch)
    rates: dict[str, float] = {}
    for label, threads in (("ORT 1 thr", 1), ("ORT all", 0)):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        rates[label] = _best_rate(lambda s=sess: s.run(None, cpu_in), cpu_batch, repeats)
    ref = sess.run(None, cpu_in)[0]

    dev = torch.device("cuda")
    net = convert(onnx.load(path)).to(dev).eval()
    names = [i["name"] for i in row["inputs"]]
    gpu_in = _inputs(row["inputs"], batch)
    with torch.inference_mode():
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        got = net(*[torch.from_numpy(cpu_in[n]).to(dev) for n in names])
        got = (got[0] if isinstance(got, list | tuple) else got).float().cpu().numpy()
        diff = float(np.max(np.abs(got - ref)))
        xs = [torch.from_numpy(gpu_in[n]).to(dev) for n in names]

        def step() -> None:
            net(*xs)
            torch.cuda.synchronize()

        rates["GPU fp32"] = _best_rate(step, batch, repeats)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        rates["GPU tf32"] = _best_rate(step, batch, repeats)
    return {**rates, "max|diff|": diff}


def run(folder: Path, batch: int, cpu_batch: int, repeats: int) -> None:
    import onnxruntime as ort
    import torch

    index = json.loads((folder / INDEX).read_text())
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, onnxruntime {ort.__version__}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"batch {batch} on the GPU, {cpu_batch} on the CPU; events per second (best of {repeats})")
    cols = ("ORT 1 thr", "ORT all", "GPU fp32", "GPU tf32")
    print(f"{'network':22s} {'preset':6s}" + "".join(f" {c:>10s}" for c in cols)
          + f" {'GPU/1 core':>11s} {'max|diff|':>10s}")  # fmt: skip
    totals: dict[str, dict[str, float]] = {}
    for row in index:
        try:
            r = _time_network(folder, row, batch, cpu_batch, repeats)
        except Exception as exc:  # one network's converter gap must not cost the others' figures
            print(f"{row['network']:22s} {row['preset']:6s} failed: {type(exc).__name__}: {exc}", flush=True)
            continue
        ratio = max(r["GPU fp32"], r["GPU tf32"]) / r["ORT 1 thr"]
        print(f"{row['network']:22s} {row['preset']:6s}" + "".join(f" {r[c]:10.0f}" for c in cols)
              + f" {ratio:11.0f} {r['max|diff|']:10.2g}", flush=True)  # fmt: skip
        t = totals.setdefault(row["preset"], {})
        for c in cols:  # seconds per event of running every network once
            t[c] = t.get(c, 0.0) + 1.0 / r[c]
    print("\nevery network once per event (an upper bound on the chain's network cost):")
    for preset, t in totals.items():
        rate = {c: 1.0 / v for c, v in t.items()}
        gpu = max(rate["GPU fp32"], rate["GPU tf32"])
        print(f"  {preset:6s}" + "".join(f"  {c} {v:,.0f}/s" for c, v in rate.items())
              + f"  -> one GPU = {gpu / rate['ORT 1 thr']:,.0f} cores"
              f" ({gpu / rate['ORT all']:.1f}x this machine's {os.cpu_count()} CPUs)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="catalog networks -> ONNX (needs TensorFlow)")
    e.add_argument("--out", type=Path, default=Path("gpu-bench"))
    e.add_argument("--presets", nargs="+", default=["small", "full"])
    r = sub.add_parser("run", help="time the ONNX graphs: onnxruntime CPU vs PyTorch GPU")
    r.add_argument("folder", type=Path)
    r.add_argument("--batch", type=int, default=1024, help="events per GPU batch")
    r.add_argument("--cpu-batch", type=int, default=64, help="events per CPU batch")
    r.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if args.cmd == "export":
        export(args.out, args.presets)
    else:
        run(args.folder, args.batch, args.cpu_batch, args.repeats)


if __name__ == "__main__":
    main()
