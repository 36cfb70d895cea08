"""Cost of the folder evaluation protocol against the embedding it needs
(docs/evaluation.md, "Your own faces: the `folders` protocol").

    python bench/bench_folders_eval.py [--images 2000] [--pairs 10000] [--levels blur,lowres,jpeg] [--threads N]

Writes `--images` aligned 112x112 images as identity folders (5 per identity) into a temporary folder, builds the
`folders` protocol with `impostor_ratio` set so the pair count is `--pairs`, embeds every image clean and at each
level with the tiny backbone (with the flip, as validation does), then scores (metrics, pair list, report, ROC, DET
and histogram pictures). Prints the embedding time, the protocol's own time (pair building + scoring + files) and
the whole evaluation, and checks that the whole costs at most 2x the embedding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from models import build_backbone, preprocess
from validation.protocols import SetEmbeddings, build_protocol


def write_folders(root: Path, images: int, per_identity: int = 5) -> None:
    rng = np.random.default_rng(0)
    for i in range(images):
        ident = i // per_identity
        base = np.full((112, 112, 3), (37 * ident) % 200, np.uint8)
        img = cv2.add(base, rng.integers(0, 55, (112, 112, 3), dtype=np.uint8))
        path = root / f"id{ident:05d}" / f"{i % per_identity}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), img)


@torch.no_grad()
def embed(model, dataset, batch_size: int, workers: int) -> SetEmbeddings:
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    out = {"emb": [], "norm": [], "emb_flip": [], "norm_flip": []}
    for images, _ in loader:
        for suffix, x in (("", images), ("_flip", images.flip(3))):
            emb, norm = model(preprocess(x, model.meta).contiguous(memory_format=torch.channels_last))
            out[f"emb{suffix}"].append(emb.numpy())
            out[f"norm{suffix}"].append(norm.numpy())
    return SetEmbeddings(**{k: np.concatenate(v) for k, v in out.items()})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--levels", default="blur,lowres,jpeg")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (decode + degrade)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    per_identity = 5
    genuine = (args.images // per_identity) * per_identity * (per_identity - 1) // 2
    ratio = (args.pairs - genuine) / genuine
    levels = [lv for lv in args.levels.split(",") if lv]
    model = build_backbone("tiny").eval().to(memory_format=torch.channels_last)
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "eval", Path(tmp) / "run"
        write_folders(root, args.images, per_identity)
        t0 = time.perf_counter()
        protocol = build_protocol("bench", {"kind": "folders", "path": str(root), "levels": ["clean"] + levels,
                                            "impostor_ratio": ratio, "genuine_per_identity": 50})
        t_pairs = time.perf_counter() - t0
        t0 = time.perf_counter()
        embeddings = embed(model, protocol.dataset(), args.batch_size, args.workers)
        t_embed = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics = protocol.compute(embeddings, "pre_norm_add")
        t_score = time.perf_counter() - t0
        t0 = time.perf_counter()
        protocol.artifacts(out)
        t_files = time.perf_counter() - t0
    total = t_pairs + t_embed + t_score + t_files
    print(f"{len(protocol.pairs.paths)} images, {len(protocol.pairs)} pairs ({int(protocol.pairs.same.sum())} genuine),"
          f" levels clean+{','.join(levels)}: {protocol.num_images()} embedded images (x2 with the flip), "
          f"torch threads {torch.get_num_threads()}")
    print(f"embedding (read + degrade + forward + flip): {t_embed:.2f} s")
    print(f"protocol: pairs {t_pairs:.2f} s, scoring {t_score:.2f} s, files (csv, json, 3 PNGs) {t_files:.2f} s")
    print(f"whole evaluation: {total:.2f} s = {total / t_embed:.2f}x the embedding time (limit 2x)")
    print(f"clean acc {metrics['bench/clean/acc']:.2f} (random weights; the images of an identity share a tone)")
    return 0 if total <= 2 * t_embed else 1


if __name__ == "__main__":
    sys.exit(main())
