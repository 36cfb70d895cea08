"""Embed face photos: align (inference.faces), embed in batches (inference.backends), save everything.

    run_embed("photos/", "results/", checkpoint="adaface_ir50_ms1mv2.ckpt", arch="ir_50")

writes to ``output_dir``: ``aligned/<relative name>.jpg`` (112x112 crops), ``embeddings.npy`` (unit vectors
``[N, D]`` float32), ``norms.npy`` (``[N, 1]``, the feature norm = AdaFace's image-quality proxy), ``index.csv``
(row i of the arrays <-> one input image) and ``skipped.csv`` (images without a face or unreadable: listed, not fatal).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from common import atomic
from common.images import is_image_file
from inference.backends import Backend, build_backend
from inference.faces import FaceAligner, FaceCrop
from inference.model_identity import model_identity
from validation.flip_fusion import fuse


def list_images(input_path: str | Path) -> list[Path]:
    """One image file, or every image under a folder (recursive, sorted)."""
    input_path = Path(input_path)
    if input_path.is_file():
        return [input_path]
    if not input_path.is_dir():
        raise FileNotFoundError(f"input not found: {input_path}")
    return sorted(p for p in input_path.rglob("*") if is_image_file(p))


@dataclass
class EmbedOutput:
    faces: list[FaceCrop]  # embedded faces, row i <-> embeddings[i]
    embeddings: np.ndarray  # [N, D] float32 unit vectors
    norms: np.ndarray  # [N, 1] float32
    skipped: list[FaceCrop]


def embed_images(paths, backend: Backend, aligner: FaceAligner, batch_size: int = 32,
                 progress: bool = True, desc: str = "embed", flip_fusion: str | None = None) -> EmbedOutput:
    """Align and embed `paths` in batches; faceless or unreadable images go to `skipped`. `flip_fusion` (a mode of
    `validation.flip_fusion`) also embeds each mirrored crop and fuses the two, as the validation protocols do."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    faces, skipped, embs, norms, pending = [], [], [], [], []

    def flush():
        if pending:
            batch = np.stack([f.crop for f in pending])
            emb, norm = backend.embed(batch)
            if flip_fusion is not None:
                emb_flip, norm_flip = backend.embed(np.ascontiguousarray(batch[:, :, ::-1]))
                emb, norm = fuse(emb, norm, emb_flip, norm_flip, flip_fusion)
            embs.append(emb)
            norms.append(norm)
            faces.extend(pending)
            pending.clear()

    for path in tqdm(list(paths), desc=desc, unit="img", disable=not progress):
        face = aligner(Path(path))
        if face.crop is None:
            skipped.append(face)
            continue
        pending.append(face)
        if len(pending) >= batch_size:
            flush()
    flush()
    dim = embs[0].shape[1] if embs else 0
    return EmbedOutput(
        faces,
        np.concatenate(embs).astype(np.float32) if embs else np.zeros((0, dim), np.float32),
        np.concatenate(norms).astype(np.float32) if norms else np.zeros((0, 1), np.float32),
        skipped,
    )


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.relative_to(root)
    except ValueError:
        return Path(path.name)


def write_skipped(path: Path, skipped: list[FaceCrop]) -> None:
    with atomic.atomic_write(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "reason"])
        writer.writerows([str(s.path), s.reason] for s in skipped)


def run_embed(input_dir, output_dir, backend: Backend | None = None, batch_size: int = 32, *,
              checkpoint=None, arch: str | None = "ir_50", mtcnn_weights=None, align: str = "auto",
              min_face_size: float = 20.0, device: str = "cpu", save_aligned: bool = True,
              backbone_kwargs: dict | None = None, progress: bool = True) -> dict:
    """Embed every image under `input_dir` into `output_dir`. Plain arguments only (main.py passes config values).

    backend: a ready Backend, or None to build one from `checkpoint` (`.onnx` -> onnxruntime, else torch `arch`).
    Returns a summary dict: counts and the paths written.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    paths = list_images(input_dir)
    if backend is None:
        backend = build_backend(checkpoint, arch, device=device, backbone_kwargs=backbone_kwargs)
    aligner = FaceAligner(align=align, mtcnn_weights=mtcnn_weights, min_face_size=min_face_size, device=device)
    out = embed_images(paths, backend, aligner, batch_size=batch_size, progress=progress)

    output_dir.mkdir(parents=True, exist_ok=True)
    root = input_dir if input_dir.is_dir() else input_dir.parent
    rows, used = [], set()
    for i, face in enumerate(out.faces):
        rel = _relative(face.path, root)
        aligned = ""
        if save_aligned:
            target = output_dir / "aligned" / rel.with_suffix(".jpg")
            if target in used:  # a.png and a.jpg side by side: keep both crops
                target = target.with_name(f"{rel.stem}_{rel.suffix.lstrip('.')}.jpg")
            used.add(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            ok, jpeg = cv2.imencode(".jpg", face.crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
            atomic.write_bytes(target, jpeg.tobytes(), durable=False)  # bulk crops: no fsync per file
            aligned = str(target.relative_to(output_dir))
        box = face.box if face.box is not None else np.full(5, np.nan)
        rows.append({
            "row": i, "path": str(rel), "aligned": aligned, "method": face.method, "num_faces": face.num_faces,
            "face_score": f"{box[4]:.4f}", "x1": f"{box[0]:.1f}", "y1": f"{box[1]:.1f}", "x2": f"{box[2]:.1f}",
            "y2": f"{box[3]:.1f}", "norm": f"{out.norms[i, 0]:.4f}",
        })
    for name, array in (("embeddings.npy", out.embeddings), ("norms.npy", out.norms)):
        with atomic.atomic_write(output_dir / name) as f:
            np.save(f, array)
    fields = ["row", "path", "aligned", "method", "num_faces", "face_score", "x1", "y1", "x2", "y2", "norm"]
    with atomic.atomic_write(output_dir / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    write_skipped(output_dir / "skipped.csv", out.skipped)
    if checkpoint is not None:  # names the model for task=enroll / identify reading this folder (no flip fusion)
        atomic.write_json(output_dir / "model.json", model_identity(checkpoint, arch, None, backbone_kwargs))

    summary = {"backend": backend.name, "images": len(paths), "embedded": len(out.faces),
               "skipped": len(out.skipped), "output_dir": str(output_dir)}
    print(f"embedded {len(out.faces)}/{len(paths)} images with {backend.name} -> {output_dir}")
    for s in out.skipped:
        print(f"  skipped {s.path}: {s.reason}")
    return summary
