"""IJB-B / IJB-C (loose crops, 5-point landmarks, meta/ protocol files) -> the packed set ``<out>/<ijbb|ijbc>``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from alignment.align import align_face
from dataset.evalsets import write_packed_set
from dataset.prepare.summary import Summary
from dataset.prepare.workers import CROP_SIZE, map_images, read_image


def detect_ijb_name(root: Path) -> str:
    found = sorted({p.name.split("_")[0] for p in (root / "meta").glob("ijb?_face_tid_mid.txt")})
    if len(found) != 1:
        raise FileNotFoundError(f"{root / 'meta'}: expected exactly one ijbb_/ijbc_face_tid_mid.txt, found {found}")
    return found[0]


def read_template_subjects(meta: Path, name: str) -> dict[int, int]:
    """template_id -> subject_id from the 1:N gallery/probe csv files (empty when they are absent)."""
    subjects = {}
    for path in sorted(meta.glob(f"{name}_1N_*.csv")):
        with open(path, newline="") as f:
            reader = csv.reader(f)
            next(reader, None)  # header row
            for row in reader:
                if len(row) >= 2 and row[0].strip().lstrip("-").isdigit():
                    subjects[int(row[0])] = int(row[1])
    return subjects


def _ijb_task(task):
    path, points = task
    if points is None:
        return None, "no landmarks"
    img = read_image(path)
    if img is None:
        return None, "image missing or unreadable"
    return align_face(img, points, CROP_SIZE), ""


def prepare_ijb(root, out_root, name: str | None = None, workers: int = 1) -> Summary:
    """IJB loose crops + 5-point landmarks -> ``<out_root>/<ijbb|ijbc>``, row i = line i of *_face_tid_mid.txt.

    The protocol needs every row, so a missing image or landmark becomes a black placeholder (faceness 0), reported.
    """
    root = Path(root)
    name = name or detect_ijb_name(root)
    meta = root / "meta"
    tid_mid = meta / f"{name}_face_tid_mid.txt"
    pts_file = meta / f"{name}_name_5pts_score.txt"
    pairs = meta / f"{name}_template_pair_label.txt"
    for path in (tid_mid, pts_file, pairs):
        if not path.is_file():
            raise FileNotFoundError(f"IJB protocol file missing: {path}")
    landmarks, faceness = {}, {}
    for line_no, line in enumerate(pts_file.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 12:
            raise ValueError(f"{pts_file}:{line_no}: expected name + 10 coordinates + faceness, got {len(fields)}")
        landmarks[fields[0]] = np.array(fields[1:11], dtype=np.float64).reshape(5, 2)
        faceness[fields[0]] = float(fields[11])
    subjects = read_template_subjects(meta, name)
    tasks, rows = [], []
    for line_no, line in enumerate(tid_mid.read_text().splitlines(), 1):
        fields = line.split()
        if len(fields) < 3:
            raise ValueError(f"{tid_mid}:{line_no}: expected 'name template_id media_id', got {line!r}")
        image, template, media = fields[0], int(fields[1]), int(fields[2])
        tasks.append((root / "loose_crop" / image, landmarks.get(image)))
        rows.append({"name": image, "label": subjects.get(template, -1), "template": template, "media": media,
                     "faceness": faceness.get(image, 0.0)})
    summary = Summary(name)
    black = np.zeros((CROP_SIZE, CROP_SIZE, 3), np.uint8)

    def items():
        for row, (img, reason) in zip(rows, map_images(_ijb_task, tasks, workers, name), strict=True):
            if img is None:
                summary.skipped.append((row["name"], reason + " (black placeholder kept for the protocol order)"))
                row = dict(row, faceness=0.0)
                img = black
            else:
                summary.packed["aligned"] += 1
            yield img, row

    extra = {f"meta/{p.name}": p for p in [tid_mid, pairs, pts_file] + sorted(meta.glob(f"{name}_1N_*.csv"))}
    summary.out_dir = write_packed_set(Path(out_root) / name, items(),
                                       ["index", "name", "label", "template", "media", "faceness"], extra_files=extra)
    return summary
