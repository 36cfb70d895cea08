"""Inference throughput on CPU: MTCNN detection + alignment (images/s) and embedding (aligned crops/s).

    python bench/bench_infer.py [--threads 2] [--batch-size 32] [--archs tiny ir_50]

CPU-seconds are printed too: on a shared machine they are steadier than wall-clock figures.
Detection uses the real test photos and MTCNN weights (SHARED below; skipped if absent); embedding uses random weights
(speed does not depend on them).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from alignment.align import align_face
from inference.backends import TorchBackend

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def bench_detection(repeats: int) -> None:
    weights = SHARED / "mtcnn" / "mtcnn_weights.npz"
    photos = sorted((SHARED / "faces").glob("*.jp*g"))
    if not weights.is_file() or not photos:
        print(f"detection: skipped (no weights/photos under {SHARED})")
        return
    from alignment.mtcnn import MTCNN

    detector = MTCNN(weights)
    images = [cv2.imread(str(p)) for p in photos]
    for img in images[:2]:  # warm-up
        detector.detect(img)
    per_image = {}
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        for path, img in zip(photos, images, strict=True):
            t = time.perf_counter()
            boxes, landmarks = detector.detect(img)
            for pts in landmarks:
                align_face(img, pts)
            per_image[path.name] = (time.perf_counter() - t, img.shape, len(boxes))
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    n = repeats * len(images)
    print(f"detection+alignment: {n / total:.1f} images/s over {len(images)} photos x {repeats} "
          f"(mean {1000 * total / n:.0f} ms/image; {n / cpu:.1f} images per CPU-second)")
    for name, (sec, shape, faces) in per_image.items():
        print(f"  {name:12s} {shape[1]:5d}x{shape[0]:<5d} {faces:2d} faces  {1000 * sec:6.0f} ms")


def bench_embedding(arch: str, batch_size: int, batches: int) -> None:
    import models

    backend = TorchBackend(models.build_backbone(arch))
    batch = np.random.default_rng(0).integers(0, 255, (batch_size, 112, 112, 3), dtype=np.uint8)
    backend.embed(batch[:2])  # warm-up
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
        backend.embed(batch)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    n = batches * batch_size
    print(f"embedding {arch:8s}: {n / total:7.1f} images/s (batch {batch_size}, fp32; "
          f"{n / cpu:.1f} images per CPU-second)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--archs", nargs="+", default=["tiny", "ir_50"])
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} threads")
    bench_detection(a.repeats)
    for arch in a.archs:
        bench_embedding(arch, a.batch_size, batches=8 if arch == "tiny" else 2)


if __name__ == "__main__":
    main()
