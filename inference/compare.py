"""Cosine similarity between face photos: every image against every other one, or folder A against folder B.

    run_compare(["a.jpg", "b.jpg", "c.jpg"], None, "results/", checkpoint="adaface_ir50_ms1mv2.ckpt")

prints the matrix and writes ``similarity.csv`` (matrix with row/column names), ``pairs.csv`` (one line per pair,
highest similarity first), ``heatmap.png`` and ``skipped.csv`` (images without a face) to ``output_dir``.

With ``thresholds="thresholds.json"`` (written by task=calibrate for this very model: a file calibrated for another
model is refused) every pair also gets a decision at the calibrated FAR ``far``: ``match`` (similarity above the
threshold), ``no match``, or ``rejected: low quality`` (the lower feature norm of the two faces is below the
quality threshold of the error-versus-discard analysis). The images are then embedded with the flip fusion the
threshold was calibrated with
(docs/evaluation.md, "Threshold calibration, error-versus-discard, score fusion (`task=calibrate`)").
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from common import atomic
from inference.backends import Backend, build_backend
from inference.embedder import embed_images, list_images, write_skipped
from inference.faces import FaceAligner
from inference.model_identity import load_thresholds, model_identity, pick_threshold


def _collect(paths) -> list[Path]:
    """A folder, one file, or a list of files and folders -> image paths (folders expanded, sorted)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out = []
    for p in paths:
        out.extend(list_images(p))
    return out


def _names(paths: list[Path]) -> list[str]:
    """Short unique labels: file names, or parent/name where file names collide."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(Path(p.parent.name) / p.name) for p in paths]


def save_heatmap(sim: np.ndarray, rows: list[str], cols: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    size = (max(4.0, 0.6 * len(cols) + 2.5), max(3.5, 0.5 * len(rows) + 2.0))
    fig, ax = plt.subplots(figsize=size)
    im = ax.imshow(sim, cmap="viridis", vmin=-1.0, vmax=1.0)
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    if sim.size <= 400:  # numbers stay readable up to ~20x20
        for (i, j), v in np.ndenumerate(sim):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.3 else "k")
    fig.colorbar(im, ax=ax, label="cosine similarity")
    ax.set_title("face similarity")
    fig.tight_layout()
    with atomic.atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def decision_rule(thresholds, checkpoint, arch: str | None, far: float, protocol: str | None,
                  backbone_kwargs: dict | None = None) -> dict:
    """{threshold, quality, flip_fusion, protocol, far} from a thresholds file, after checking it was calibrated
    for this model (inference.model_identity.load_thresholds refuses another model's file)."""
    if checkpoint is None:
        raise ValueError("decisions from a thresholds file need the model file (checkpoint=...) to check that the "
                         "thresholds were calibrated for it")
    data = load_thresholds(thresholds, model_identity(checkpoint, arch, None, backbone_kwargs))
    name, entry, quality = pick_threshold(data, far, protocol)
    return {"threshold": float(entry["threshold"]), "quality": quality, "flip_fusion": data["model"]["flip_fusion"],
            "protocol": name, "far": float(far), "file": str(thresholds)}


def decide(similarity: float, quality: float, rule: dict) -> str:
    """match / no match / rejected: low quality (the lower norm of the two faces under the quality threshold)."""
    if rule["quality"] is not None and quality < rule["quality"]:
        return "rejected: low quality"
    return "match" if similarity > rule["threshold"] else "no match"


def run_compare(paths_a, paths_b=None, output_dir="results", backend: Backend | None = None, *,
                checkpoint=None, arch: str | None = "ir_50", batch_size: int = 32, mtcnn_weights=None,
                align: str = "auto", min_face_size: float = 20.0, device: str = "cpu",
                backbone_kwargs: dict | None = None, progress: bool = True, thresholds=None, far: float = 1e-3,
                protocol: str | None = None) -> dict:
    """Similarity of every face in `paths_a` with every face in `paths_b` (or with `paths_a` when None).

    paths_*: a folder, an image, or a list of them. Plain arguments only (main.py passes config values).
    thresholds: a `thresholds.json` of this model: adds a decision per pair at `far` (see the module docstring).
    Returns {"rows", "cols", "similarity" [len(rows), len(cols)], "skipped", "output_dir"} (+ "decisions",
    {(row, col): decision}, and "rule" with thresholds).
    """
    output_dir = Path(output_dir)
    rule = None if thresholds is None else decision_rule(thresholds, checkpoint, arch, far, protocol, backbone_kwargs)
    flip = None if rule is None else rule["flip_fusion"]
    if backend is None:
        backend = build_backend(checkpoint, arch, device=device, backbone_kwargs=backbone_kwargs)
    aligner = FaceAligner(align=align, mtcnn_weights=mtcnn_weights, min_face_size=min_face_size, device=device)
    out_a = embed_images(_collect(paths_a), backend, aligner, batch_size, progress, desc="embed A", flip_fusion=flip)
    out_b = out_a if paths_b is None else embed_images(_collect(paths_b), backend, aligner, batch_size, progress,
                                                       desc="embed B", flip_fusion=flip)
    sim = out_a.embeddings @ out_b.embeddings.T
    rows = _names([f.path for f in out_a.faces])
    cols = _names([f.path for f in out_b.faces])
    skipped = out_a.skipped + ([] if paths_b is None else out_b.skipped)

    output_dir.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_write(output_dir / "similarity.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([""] + cols)
        writer.writerows([name] + [f"{v:.4f}" for v in row] for name, row in zip(rows, sim, strict=True))
    pairs = [(rows[i], cols[j], float(sim[i, j]),
              "" if rule is None else decide(float(sim[i, j]), float(min(out_a.norms[i, 0], out_b.norms[j, 0])), rule))
             for i in range(len(rows)) for j in range(len(cols)) if paths_b is not None or i < j]
    pairs.sort(key=lambda t: -t[2])
    with atomic.atomic_write(output_dir / "pairs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "similarity"] + ([] if rule is None else ["decision"]))
        writer.writerows([a, b, f"{s:.4f}"] + ([] if rule is None else [d]) for a, b, s, d in pairs)
    write_skipped(output_dir / "skipped.csv", skipped)
    if len(rows) and len(cols):
        save_heatmap(sim, rows, cols, output_dir / "heatmap.png")

    width = max([len(r) for r in rows] + [4])
    cell = min(max([len(c) for c in cols] + [7]), 16)
    print(" " * width + "  " + "  ".join(f"{c[:cell]:>{cell}}" for c in cols))
    for name, row in zip(rows, sim, strict=True):
        print(f"{name:>{width}}  " + "  ".join(f"{v:{cell}.4f}" for v in row))
    result = {"rows": rows, "cols": cols, "similarity": sim, "skipped": [str(s.path) for s in skipped],
              "output_dir": str(output_dir)}
    if rule is not None:
        print(f"decisions at FAR {rule['far']:g} of {rule['protocol']} (threshold {rule['threshold']:.4f}"
              + ("" if rule["quality"] is None else f", quality threshold {rule['quality']:.3f}") + "):")
        for a, b, s, d in pairs:
            print(f"  {a}  {b}  {s:.4f}  {d}")
        result["decisions"] = {(a, b): d for a, b, _, d in pairs}
        result["rule"] = rule
    for s in skipped:
        print(f"skipped {s.path}: {s.reason}")
    print(f"results in {output_dir}")
    return result
