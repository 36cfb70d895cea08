"""Embed face photos: detect + align (MTCNN) or pass aligned crops through, embed in batches, save everything.

    run_embed("photos/", "results/", checkpoint="adaface_ir50_ms1mv2.ckpt", arch="ir_50")

writes to ``output_dir``: ``aligned/<relative name>.jpg`` (112x112 crops), ``embeddings.npy`` (unit vectors
``[N, D]`` float32), ``norms.npy`` (``[N, 1]``, the feature norm = AdaFace's image-quality proxy), ``index.csv``
(row i of the arrays <-> one input image) and ``skipped.csv`` (images without a face or unreadable: listed, not fatal).

A backend is anything with ``embed(batch_uint8_bgr [B,112,112,3]) -> (unit embeddings [B,D], norms [B,1])``:
``TorchBackend`` (our checkpoints, AdaFace ``.ckpt``, InsightFace ``iresnet``) or ``OnnxBackend`` (models.export).
"""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from tqdm import tqdm

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
ALIGN_MODES = ("auto", "mtcnn", "none")
INPUT_SIZE = 112


# --------------------------------------------------------------------------- backends

class Backend(Protocol):
    name: str

    def embed(self, batch_uint8_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[B,H,W,3] uint8 BGR -> (unit embeddings [B,D] float32, norms [B,1] float32)."""


def _as_unit(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(features, axis=1, keepdims=True).astype(np.float32)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32), norms


class TorchBackend:
    """A backbone from `models`; colour order and normalisation come from `model.meta` via `models.preprocess`."""

    def __init__(self, model, device: str = "cpu"):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.name = f"torch:{model.meta.get('name', type(model).__name__)}"

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None, arch: str, device: str = "cpu",
                        **backbone_kwargs) -> TorchBackend:
        """Build `arch` and load `checkpoint` (ours, AdaFace .ckpt or InsightFace .pth); None = random weights."""
        import models

        model = models.build_backbone(arch, **backbone_kwargs)
        if checkpoint is not None:
            models.load_pretrained(model, str(checkpoint))
        return cls(model, device=device)

    def embed(self, batch_uint8_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import models

        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch_uint8_bgr.transpose(0, 3, 1, 2))).to(self.device)
        with torch.inference_mode():
            emb, norm = self.model(models.preprocess(x, self.model.meta))
        return emb.float().cpu().numpy(), norm.float().reshape(-1, 1).cpu().numpy()


class OnnxBackend:
    """An ONNX model run by onnxruntime. Its metadata says the expected colour order (`color`: BGR or RGB) and, for
    float inputs, the normalisation (`mean`, `std`); a uint8 input gets the raw pixels."""

    def __init__(self, path: str | Path, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        self.session = ort.InferenceSession(str(self.path), providers=providers or ["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        self.color = props.get("color", props.get("input_color", "BGR")).upper()
        if self.color not in ("BGR", "RGB"):
            raise ValueError(f"{self.path}: metadata 'color' must be BGR or RGB, got {self.color!r}")
        self.mean = float(props.get("mean", 0.5))
        self.std = float(props.get("std", 0.5))
        inp = self.session.get_inputs()[0]
        self.input_name, self.uint8_input = inp.name, "uint8" in inp.type
        self.name = f"onnx:{self.path.name}"

    def embed(self, batch_uint8_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(batch_uint8_bgr.transpose(0, 3, 1, 2))
        if self.color == "RGB":
            x = np.ascontiguousarray(x[:, ::-1])
        if not self.uint8_input:
            x = ((x.astype(np.float32) / 255.0 - self.mean) / self.std).astype(np.float32)
        outputs = self.session.run(None, {self.input_name: x})
        if len(outputs) >= 2:  # (unit embedding, norm) like the torch backbones
            return outputs[0].astype(np.float32), outputs[1].astype(np.float32).reshape(-1, 1)
        return _as_unit(outputs[0].astype(np.float32))


def build_backend(checkpoint: str | Path | None = None, arch: str | None = "ir_50", device: str = "cpu",
                  backbone_kwargs: dict | None = None) -> Backend:
    """`.onnx` files run through onnxruntime; anything else is a torch checkpoint for backbone `arch`."""
    if checkpoint is not None and str(checkpoint).endswith(".onnx"):
        return OnnxBackend(checkpoint)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    if arch is None:
        raise ValueError("a torch checkpoint needs the backbone name (arch=ir_50, iresnet_r100, tiny, ...)")
    if checkpoint is None:
        warnings.warn(f"no checkpoint given: {arch} has random weights (fine for tests, useless for matching)",
                      stacklevel=2)
    return TorchBackend.from_checkpoint(checkpoint, arch, device=device, **(backbone_kwargs or {}))


# --------------------------------------------------------------------------- detection + alignment

@dataclass
class FaceCrop:
    path: Path
    crop: np.ndarray | None  # aligned 112x112 BGR, None when skipped
    method: str = ""  # "mtcnn" or "passthrough"
    box: np.ndarray | None = None  # x1, y1, x2, y2, score
    landmarks: np.ndarray | None = None
    num_faces: int = 0
    reason: str = ""  # why it was skipped


@dataclass
class FaceAligner:
    """Detects the largest face with MTCNN and aligns it, or passes aligned 112x112 crops through.

    align: "auto" (112x112 images pass through, others are detected), "mtcnn" (always detect), "none" (never detect;
    images are resized to 112x112). MTCNN is only built when an image needs it, so aligned-only input needs no weights.
    """

    align: str = "auto"
    mtcnn_weights: str | Path | None = None
    min_face_size: float = 20.0
    device: str = "cpu"
    _mtcnn: object = field(default=None, repr=False)

    def __post_init__(self):
        if self.align not in ALIGN_MODES:
            raise ValueError(f"align must be one of {ALIGN_MODES}, got {self.align!r}")

    @property
    def mtcnn(self):
        if self._mtcnn is None:
            from models.mtcnn import MTCNN

            self._mtcnn = MTCNN(self.mtcnn_weights, min_face_size=self.min_face_size, device=self.device)
        return self._mtcnn

    def __call__(self, path: Path) -> FaceCrop:
        from dataset.align import align_face

        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            return FaceCrop(path, None, reason="unreadable image")
        passthrough = self.align == "none" or (self.align == "auto" and img.shape[:2] == (INPUT_SIZE, INPUT_SIZE))
        if passthrough:
            return FaceCrop(path, align_face(img, None, INPUT_SIZE), method="passthrough", num_faces=1)
        boxes, landmarks = self.mtcnn.detect(img)
        if len(boxes) == 0:
            return FaceCrop(path, None, reason="no face detected")
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        best = int(np.argmax(area))  # group photos: the most prominent face
        crop = align_face(img, landmarks[best], INPUT_SIZE)
        return FaceCrop(path, crop, "mtcnn", boxes[best], landmarks[best], num_faces=len(boxes))


# --------------------------------------------------------------------------- embedding loop

def list_images(input_path: str | Path) -> list[Path]:
    """One image file, or every image under a folder (recursive, sorted)."""
    input_path = Path(input_path)
    if input_path.is_file():
        return [input_path]
    if not input_path.is_dir():
        raise FileNotFoundError(f"input not found: {input_path}")
    return sorted(p for p in input_path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


@dataclass
class EmbedOutput:
    faces: list[FaceCrop]  # embedded faces, row i <-> embeddings[i]
    embeddings: np.ndarray  # [N, D] float32 unit vectors
    norms: np.ndarray  # [N, 1] float32
    skipped: list[FaceCrop]


def embed_images(paths, backend: Backend, aligner: FaceAligner, batch_size: int = 32,
                 progress: bool = True, desc: str = "embed") -> EmbedOutput:
    """Align and embed `paths` in batches; faceless or unreadable images go to `skipped`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    faces, skipped, embs, norms, pending = [], [], [], [], []

    def flush():
        if pending:
            emb, norm = backend.embed(np.stack([f.crop for f in pending]))
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
    with open(path, "w", newline="") as f:
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
            cv2.imwrite(str(target), face.crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
            aligned = str(target.relative_to(output_dir))
        box = face.box if face.box is not None else np.full(5, np.nan)
        rows.append({
            "row": i, "path": str(rel), "aligned": aligned, "method": face.method, "num_faces": face.num_faces,
            "face_score": f"{box[4]:.4f}", "x1": f"{box[0]:.1f}", "y1": f"{box[1]:.1f}", "x2": f"{box[2]:.1f}",
            "y2": f"{box[3]:.1f}", "norm": f"{out.norms[i, 0]:.4f}",
        })
    np.save(output_dir / "embeddings.npy", out.embeddings)
    np.save(output_dir / "norms.npy", out.norms)
    fields = ["row", "path", "aligned", "method", "num_faces", "face_score", "x1", "y1", "x2", "y2", "norm"]
    with open(output_dir / "index.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    write_skipped(output_dir / "skipped.csv", out.skipped)

    summary = {"backend": backend.name, "images": len(paths), "embedded": len(out.faces),
               "skipped": len(out.skipped), "output_dir": str(output_dir)}
    print(f"embedded {len(out.faces)}/{len(paths)} images with {backend.name} -> {output_dir}")
    for s in out.skipped:
        print(f"  skipped {s.path}: {s.reason}")
    return summary


def run_embed_task(cfg) -> dict:
    """`python main.py task=embed input_dir=... checkpoint=... output_dir=...` (top-level keys or `embed.*`)."""
    e = cfg.embed
    input_dir = cfg.get("input_dir") or e.input_dir
    if input_dir is None:
        raise ValueError("task=embed needs input_dir=<folder or image> (or embed.input_dir=...)")
    return run_embed(input_dir, cfg.get("output_dir") or e.output_dir, batch_size=e.batch_size,
                     checkpoint=cfg.checkpoint, arch=cfg.backbone.name, mtcnn_weights=e.mtcnn_weights, align=e.align,
                     device=e.device, backbone_kwargs=dict(cfg.backbone.get("kwargs") or {}))


def main(argv=None) -> None:
    import argparse

    p = argparse.ArgumentParser(description="Detect, align and embed face photos.")
    p.add_argument("input_dir")
    p.add_argument("--output-dir", default="results")
    p.add_argument("--checkpoint", help="torch checkpoint (ours, AdaFace .ckpt, InsightFace .pth) or .onnx")
    p.add_argument("--arch", default="ir_50")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--mtcnn-weights")
    p.add_argument("--align", choices=ALIGN_MODES, default="auto")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    run_embed(a.input_dir, a.output_dir, batch_size=a.batch_size, checkpoint=a.checkpoint, arch=a.arch,
              mtcnn_weights=a.mtcnn_weights, align=a.align, device=a.device)


if __name__ == "__main__":
    main()
