"""Your own photos: ``<root>/<identity>/<image>`` -> aligned 112x112 identity folders plus ``skipped.csv``
(docs/evaluation.md, "Your own faces: preparation (`dataset.prepare folders`, `data=folders`)")."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from alignment.align import align_face, pick_face
from common import atomic
from common.images import is_image_file
from dataset.prepare.summary import Summary
from dataset.prepare.workers import CROP_SIZE, detector, init_mtcnn, map_images

log = logging.getLogger(__name__)

FOLDER_ALIGN = ("mtcnn", "landmarks", "none")


def read_landmark_file(path) -> dict[str, np.ndarray]:
    """``<identity>/<image> x1 y1 x2 y2 x3 y3 x4 y4 x5 y5`` per line (spaces, tabs or commas; ``#`` comments):
    relative path under --root -> 5x2 points (eyes, nose, mouth corners, image-left first)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--landmarks {path}: no such file")
    points = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f for f in re.split(r"[\t ,;]+", line) if f]
        if len(fields) != 11:
            raise ValueError(f"{path}:{line_no}: expected '<identity>/<image>' and 10 coordinates, got "
                             f"{len(fields)} fields")
        try:
            values = np.array([float(v) for v in fields[1:]], np.float64).reshape(5, 2)
        except ValueError:
            raise ValueError(f"{path}:{line_no}: non-numeric landmark in {fields[1:]}") from None
        if not np.isfinite(values).all():
            raise ValueError(f"{path}:{line_no}: non-finite landmark in {fields[1:]}")
        key = fields[0].replace("\\", "/")
        if key in points:
            raise ValueError(f"{path}:{line_no}: {key} listed twice")
        points[key] = values
    return points


def _folder_task(task):
    """(path, mode, points) -> (JPEG bytes or None, reason when skipped)."""
    path, mode, points = task
    data = path.read_bytes()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None, "unreadable image"
    if mode == "none":
        if img.shape[:2] == (CROP_SIZE, CROP_SIZE) and path.suffix.lower() in (".jpg", ".jpeg"):
            return data, ""  # already aligned: keep the bytes, no re-encoding loss
        return _jpeg(align_face(img, None, CROP_SIZE)), ""
    if mode == "landmarks":
        if points is None:
            return None, "no landmarks for this image in the landmark file"
        return _jpeg(align_face(img, points, CROP_SIZE)), ""
    boxes, landmarks = detector().detect(img)
    if len(boxes) == 0:
        return None, "no face detected"
    return _jpeg(align_face(img, landmarks[pick_face(boxes, img.shape)], CROP_SIZE)), ""


def _jpeg(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ValueError("JPEG encoding of an aligned crop failed")
    return buf.tobytes()


def prepare_folders(root, out, landmarks=None, align: str = "mtcnn", mtcnn_weights=None,
                    min_face_size: float = 20.0, workers: int = 1) -> Summary:
    """``root/<identity>/<image>`` photos -> ``out/<identity>/<image stem>.jpg`` aligned 112x112 crops.

    align: ``mtcnn`` (largest face, a tie to the one nearest the centre: `alignment.align.pick_face`), ``landmarks``
    (5 points per image from ``landmarks``, no detector) or ``none`` (crops already aligned; resized if needed).
    Every image not written is listed with its reason in ``out/skipped.csv``. The result is built in a sibling
    folder and renamed at the end, so ``out`` is either the previous result or the complete new one.
    """
    root, out = Path(root), Path(out)
    if landmarks is not None:
        align = "landmarks"
    if align not in FOLDER_ALIGN:
        raise ValueError(f"--align {align!r}: choose one of {FOLDER_ALIGN}")
    if align == "landmarks" and landmarks is None:
        raise ValueError("--align landmarks needs --landmarks FILE")
    if not root.is_dir():
        raise FileNotFoundError(f"--root {root}: not a directory (expected <root>/<identity>/<image>)")
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise ValueError(f"--out {out} must not be inside --root {root}")
    points = read_landmark_file(landmarks) if landmarks is not None else {}
    summary = Summary("folders")
    tasks, targets, per_identity = [], [], Counter()
    identities = sorted(p for p in root.iterdir() if p.is_dir())
    if not identities:
        raise ValueError(f"--root {root}: no identity folders (expected <root>/<identity>/<image>)")
    for ident in identities:
        files = sorted(p for p in ident.iterdir() if p.is_file())
        if not files:
            summary.skipped.append((f"{ident.name}/", "empty identity folder"))
            continue
        used = set()
        for path in files:
            rel = f"{ident.name}/{path.name}"
            if not is_image_file(path):
                summary.skipped.append((rel, f"not an image file ({path.suffix or 'no extension'})"))
                continue
            name = f"{path.stem}.jpg" if f"{path.stem}.jpg" not in used else f"{path.name}.jpg"
            used.add(name)
            tasks.append((path, align, points.get(rel)))
            targets.append((ident.name, name, rel))
    duplicates = _duplicate_images([t[0] for t in tasks], [t[0] for t in targets])
    for digest, names in duplicates.items():
        message = f"the same image under {len(names)} identities: {', '.join(names)}"
        log.warning("%s (sha1 %s...)", message, digest[:12])
        summary.notes[message] += 1
    with atomic.staged_dir(out) as stage:
        results = map_images(_folder_task, tasks, workers, "folders", init_mtcnn,
                               (mtcnn_weights if align == "mtcnn" else False, min_face_size))
        for (ident, name, rel), (data, reason) in zip(targets, results, strict=True):
            if data is None:
                summary.skipped.append((rel, reason))
                continue
            atomic.write_bytes(stage / ident / name, data, durable=False)
            per_identity[ident] += 1
            summary.packed[align] += 1
        for ident in sorted(per_identity):
            if per_identity[ident] == 1:
                summary.notes[f"{ident}: one image, kept (impostor pairs only, no genuine pair)"] += 1
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["path", "reason"])
        writer.writerows(summary.skipped)
        atomic.write_text(stage / "skipped.csv", text.getvalue())
    summary.out_dir = out
    summary.notes[f"identities with images: {len(per_identity)}"] += 1
    return summary


def _duplicate_images(paths: list[Path], identities: list[str]) -> dict[str, list[str]]:
    """sha1 -> the identities holding that exact file, for files found under more than one identity."""
    seen: dict[str, set[str]] = {}
    for path, ident in zip(paths, identities, strict=True):
        seen.setdefault(hashlib.sha1(path.read_bytes()).hexdigest(), set()).add(ident)
    return {d: sorted(ids) for d, ids in seen.items() if len(ids) > 1}
