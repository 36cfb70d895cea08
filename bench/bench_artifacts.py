"""Size and CPU speed of ONNX artifacts (fp32 / int8 / fp16): single-face latency at batch 1 (p50 / p95) and
throughput at batch 32, on a fixed number of ONNX Runtime threads
(docs/deployment.md, "Quantized and half-precision ONNX").

    python bench/bench_artifacts.py m.onnx m_int8.onnx [m_fp16.onnx] [--threads 1] [--runs 200] [--json out.json]

Wall-clock and CPU-seconds are both printed: on a shared machine the CPU time per call is the steadier figure.
Inputs are random normalised images (speed does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def session(path: str, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def time_calls(sess, x: np.ndarray, runs: int, warmup: int = 5) -> tuple[np.ndarray, np.ndarray]:
    for _ in range(warmup):
        sess.run(None, {"input": x})
    wall, cpu = np.empty(runs), np.empty(runs)
    for i in range(runs):
        w, c = time.perf_counter(), time.process_time()
        sess.run(None, {"input": x})
        wall[i], cpu[i] = time.perf_counter() - w, time.process_time() - c
    return wall, cpu


def measure(path: str, threads: int, runs: int, batch: int, batch_runs: int) -> dict:
    sess = session(path, threads)
    size = int(sess.get_inputs()[0].shape[2]) if isinstance(sess.get_inputs()[0].shape[2], int) else 112
    rng = np.random.default_rng(0)
    one = (rng.random((1, 3, size, size), dtype=np.float32) * 2 - 1)
    many = (rng.random((batch, 3, size, size), dtype=np.float32) * 2 - 1)
    wall1, cpu1 = time_calls(sess, one, runs)
    wallb, cpub = time_calls(sess, many, batch_runs, warmup=2)
    return {"file": Path(path).name, "size_mb": Path(path).stat().st_size / 1e6, "threads": threads,
            "b1_p50_ms": 1e3 * float(np.percentile(wall1, 50)), "b1_p95_ms": 1e3 * float(np.percentile(wall1, 95)),
            "b1_cpu_ms": 1e3 * float(np.median(cpu1)), "batch": batch,
            "batch_faces_per_s": batch / float(np.median(wallb)),
            "batch_faces_per_cpu_s": batch / float(np.median(cpub))}


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=200, help="batch-1 calls timed")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--batch-runs", type=int, default=20)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    rows = [measure(m, a.threads, a.runs, a.batch, a.batch_runs) for m in a.models]
    base = rows[0]
    print(f"{'file':32s} {'MB':>7s} {'b1 p50 ms':>10s} {'b1 p95 ms':>10s} {'b1 CPU ms':>10s} "
          f"{'b' + str(a.batch) + ' faces/s':>13s} {'faces/CPU-s':>12s} {'speed-up':>8s}   ({a.threads} thread(s))")
    for r in rows:
        r["speedup_vs_first"] = base["b1_cpu_ms"] / r["b1_cpu_ms"]
        print(f"{r['file']:32s} {r['size_mb']:7.2f} {r['b1_p50_ms']:10.2f} {r['b1_p95_ms']:10.2f} "
              f"{r['b1_cpu_ms']:10.2f} {r['batch_faces_per_s']:13.1f} {r['batch_faces_per_cpu_s']:12.1f} "
              f"{r['speedup_vs_first']:7.2f}x")
    if a.json:
        from common import atomic

        atomic.write_json(a.json, rows)
    return rows


if __name__ == "__main__":
    main()
