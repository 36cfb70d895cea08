"""TinyFace (aligned release, or the raw Testing_Set detected with MTCNN) -> the packed set ``<out>/tinyface``."""

from __future__ import annotations

from pathlib import Path

import cv2

from alignment.align import align_face, pick_face
from common.images import is_image_file
from dataset.evalsets import write_packed_set
from dataset.prepare.summary import Summary
from dataset.prepare.workers import CROP_SIZE, detector, init_mtcnn, map_images, read_image

TINYFACE_SPLITS = {"Probe": "probe", "Gallery_Match": "gallery_match", "Gallery_Distractor": "gallery_distractor"}
TINYFACE_ALIGNED = "aligned_pad_0.1_pad_high"


def _tinyface_task(task):
    """(path, aligned?) -> (image or JPEG bytes or None, note)."""
    path, aligned = task
    img = read_image(path)
    if img is None:
        return None, "unreadable"
    if aligned:
        if img.shape[:2] == (CROP_SIZE, CROP_SIZE) and path.suffix.lower() in (".jpg", ".jpeg"):
            return path.read_bytes(), "aligned release"  # keep the release's bytes: no re-encoding loss
        return align_face(img, None, CROP_SIZE), "aligned release (resized)"
    # TinyFace faces are ~20 px: upscale before detecting so the 12 px P-Net window fits a face.
    scale = max(1.0, CROP_SIZE / min(img.shape[:2]))
    big = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale > 1 else img
    boxes, landmarks = detector().detect(big)
    if len(boxes) == 0:
        # The raw images are already loose face crops: the whole image beats dropping a scored probe.
        return align_face(big, None, CROP_SIZE), "no face: whole image resized"
    return align_face(big, landmarks[pick_face(boxes, big.shape)], CROP_SIZE), "mtcnn"


def find_tinyface_dirs(root: Path, source: str = "auto") -> tuple[Path, bool]:
    """The folder holding Probe/Gallery_Match/Gallery_Distractor and whether it is the aligned release."""
    aligned = [root / TINYFACE_ALIGNED, root / "tinyface" / TINYFACE_ALIGNED]
    raw = [root / "Testing_Set", root / "tinyface" / "Testing_Set", root / "tinyface", root]
    candidates = {"auto": [(d, True) for d in aligned] + [(d, False) for d in raw],
                  "aligned": [(d, True) for d in aligned + [root]], "raw": [(d, False) for d in raw]}[source]
    for directory, is_aligned in candidates:
        if all((directory / s).is_dir() for s in TINYFACE_SPLITS):
            return directory, is_aligned
    raise FileNotFoundError(
        f"{root}: no TinyFace folders {'/'.join(TINYFACE_SPLITS)} under {', '.join(str(d) for d, _ in candidates)}"
    )


def prepare_tinyface(root, out_root, source: str = "auto", mtcnn_weights=None, min_face_size: float = 20.0,
                     workers: int = 1) -> Summary:
    """TinyFace -> ``<out_root>/tinyface``: label from the file name (``<id>_<n>.jpg``), distractors -1."""
    directory, aligned = find_tinyface_dirs(Path(root), source)
    tasks, rows = [], []
    for split_dir, split in TINYFACE_SPLITS.items():
        for path in sorted(p for p in (directory / split_dir).iterdir() if is_image_file(p)):
            if split == "gallery_distractor":
                label = -1
            else:
                try:
                    label = int(path.name.split("_")[0])
                except ValueError:
                    raise ValueError(f"{path}: TinyFace names start with the identity number (<id>_<n>.jpg)") \
                        from None
            tasks.append((path, aligned))
            rows.append({"name": f"{split_dir}/{path.name}", "label": label, "split": split})
    summary = Summary("tinyface")

    def items():
        results = map_images(_tinyface_task, tasks, workers, "tinyface",
                               init_mtcnn, (False if aligned else mtcnn_weights, min_face_size))
        for row, (img, note) in zip(rows, results, strict=True):
            if img is None:
                summary.skipped.append((row["name"], note))
                continue
            summary.packed[row["split"]] += 1
            summary.notes[note] += 1
            yield img, row

    extra = {f"meta/{p.name}": p for p in sorted(directory.glob("*.mat"))}  # TinyFace's label files, if present
    summary.out_dir = write_packed_set(Path(out_root) / "tinyface", items(), ["index", "name", "label", "split"],
                                       extra_files=extra)
    return summary
