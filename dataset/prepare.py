"""Turn raw TinyFace, SCface and IJB-B/C downloads into the packed evaluation sets validation reads.

    python -m dataset.prepare tinyface --root /data/tinyface --out /data/val
    python -m dataset.prepare scface   --root /data/scface   --out /data/val [--layout lex,ley,rex,rey,nx,ny,mx,my]
    python -m dataset.prepare ijb      --root /data/IJBB     --out /data/val        # or IJBC; set name from meta/
    python -m dataset.prepare folders  --root photos/ --out aligned/ [--landmarks FILE | --align none]

The first three write ``<out>/<tinyface|scface|ijbb|ijbc>/`` (``images.rec/.idx`` + ``meta.csv`` + protocol files, see
``dataset.evalsets``) and prints what was packed and skipped. ``folders`` turns ``photos/<identity>/<image>`` into
aligned 112x112 identity folders plus ``skipped.csv`` (docs/evaluation.md, "Your own faces").
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from alignment.align import align_face, pick_face
from common import atomic
from common.images import is_image_file
from common.parallel import ordered_map
from dataset.evalsets import write_packed_set

log = logging.getLogger(__name__)

SIZE = 112
TINYFACE_SPLITS = {"Probe": "probe", "Gallery_Match": "gallery_match", "Gallery_Distractor": "gallery_distractor"}
TINYFACE_ALIGNED = "aligned_pad_0.1_pad_high"
SCFACE_LAYOUT = "lex,ley,rex,rey,nx,ny,mx,my"
SCFACE_TOKENS = {"lex", "ley", "rex", "rey", "nx", "ny", "mx", "my", "mlx", "mly", "mrx", "mry", "_"}
SCFACE_ID = re.compile(r"^(\d+)_(frontal|cam(\d+)_([123]))$")


@dataclass
class Summary:
    """What a preparation run packed and skipped (printed at the end, returned for callers and tests)."""

    name: str
    out_dir: Path | None = None
    packed: Counter = field(default_factory=Counter)  # split / kind -> count
    notes: Counter = field(default_factory=Counter)  # e.g. "no face: resized whole image"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)

    def report(self) -> str:
        lines = [f"{self.name}: packed {sum(self.packed.values())} images into {self.out_dir}"]
        lines += [f"  {k}: {v}" for k, v in sorted(self.packed.items())]
        lines += [f"  note - {k}: {v}" for k, v in sorted(self.notes.items())]
        if self.skipped:
            reasons = Counter(r for _, r in self.skipped)
            lines.append(f"  skipped {len(self.skipped)}: " + ", ".join(f"{r} ({n})" for r, n in reasons.items()))
            lines += [f"    {n}: {r}" for n, r in self.skipped[:20]]
            if len(self.skipped) > 20:
                lines.append(f"    ... {len(self.skipped) - 20} more")
        return "\n".join(lines)


def _ordered_map(fn, tasks: list, workers: int, desc: str, initializer=None, initargs=()):
    """fn over tasks in order, with a progress bar; a process pool when workers > 1 (order is kept)."""
    if workers <= 1 and initializer is not None:
        initializer(*initargs)
    results = ordered_map(fn, tasks, workers, "processes", initializer=_worker_init, initargs=(initializer, initargs),
                          chunksize=32)
    yield from tqdm(results, total=len(tasks), desc=desc, unit="img")


def _worker_init(initializer, initargs):
    # Workers share 2..N cores: one thread each avoids oversubscription (and OpenCV fork hangs).
    import torch

    cv2.setNumThreads(0)
    torch.set_num_threads(1)
    if initializer is not None:
        initializer(*initargs)


def _read(path: Path) -> np.ndarray | None:
    return cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None


# --------------------------------------------------------------------------- TinyFace

_MTCNN = None


def _init_mtcnn(weights, min_face_size):
    global _MTCNN
    if weights is not False:  # False = aligned release, no detector needed
        from alignment.mtcnn import MTCNN

        _MTCNN = MTCNN(weights, min_face_size=min_face_size)


def _tinyface_task(task):
    """(path, aligned?) -> (image or JPEG bytes or None, note)."""
    path, aligned = task
    img = _read(path)
    if img is None:
        return None, "unreadable"
    if aligned:
        if img.shape[:2] == (SIZE, SIZE) and path.suffix.lower() in (".jpg", ".jpeg"):
            return path.read_bytes(), "aligned release"  # keep the release's bytes: no re-encoding loss
        return align_face(img, None, SIZE), "aligned release (resized)"
    # TinyFace faces are ~20 px: upscale before detecting so the 12 px P-Net window fits a face.
    scale = max(1.0, SIZE / min(img.shape[:2]))
    big = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale > 1 else img
    boxes, landmarks = _MTCNN.detect(big)
    if len(boxes) == 0:
        # The raw images are already loose face crops: the whole image beats dropping a scored probe.
        return align_face(big, None, SIZE), "no face: whole image resized"
    return align_face(big, landmarks[pick_face(boxes, big.shape)], SIZE), "mtcnn"


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
        results = _ordered_map(_tinyface_task, tasks, workers, "tinyface",
                               _init_mtcnn, (False if aligned else mtcnn_weights, min_face_size))
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


# --------------------------------------------------------------------------- SCface

def parse_scface_layout(layout: str) -> list[str]:
    """Column names after the image id, e.g. ``lex,ley,rex,rey,nx,ny,mx,my`` (``_`` = ignore the column).

    Points: le/re = image-left/right eye, n = nose tip, m = mouth centre or ml/mr = the two mouth corners (their
    midpoint is used): the 4-point SCface template takes eyes, nose, mouth centre.
    """
    names = [t.strip() for t in layout.split(",")]
    unknown = [t for t in names if t not in SCFACE_TOKENS]
    if unknown:
        raise ValueError(f"SCface layout {layout!r}: unknown columns {unknown}; known: {sorted(SCFACE_TOKENS)}")
    have = set(names)
    needed = {"lex", "ley", "rex", "rey", "nx", "ny"}
    mouth_ok = {"mx", "my"} <= have or {"mlx", "mly", "mrx", "mry"} <= have
    if not needed <= have or not mouth_ok:
        raise ValueError(f"SCface layout {layout!r} must name both eyes, the nose and the mouth (mx,my or corners)")
    return names


def scface_points(values: list[float], names: list[str]) -> np.ndarray:
    col = dict(zip(names, values, strict=False))
    if "mx" in col:
        mouth = [col["mx"], col["my"]]
    else:
        mouth = [(col["mlx"] + col["mrx"]) / 2, (col["mly"] + col["mry"]) / 2]
    return np.array([[col["lex"], col["ley"]], [col["rex"], col["rey"]], [col["nx"], col["ny"]], mouth], np.float64)


def _scface_task(task):
    path, points, passthrough = task
    img = _read(path)
    if img is None:
        return None
    return align_face(img, None if passthrough else points, SIZE)


def prepare_scface(root, out_root, landmarks: str = "all.txt", images_dir: str = "images",
                   layout: str = SCFACE_LAYOUT, image_ext: str = ".jpg", passthrough: bool = False,
                   workers: int = 1) -> Summary:
    """SCface ``all.txt`` (id + landmark columns) -> ``<out_root>/scface``; infrared cam6-8 dropped."""
    root = Path(root)
    names = parse_scface_layout(layout)
    txt = root / landmarks
    if not txt.is_file():
        raise FileNotFoundError(f"SCface landmark file not found: {txt}")
    summary = Summary("scface")
    tasks, rows = [], []
    for line_no, line in enumerate(txt.read_text().splitlines(), 1):
        fields = [f for f in re.split(r"[\t ,;]+", line.strip()) if f]
        if not fields:
            continue
        image_id = Path(fields[0]).stem
        match = SCFACE_ID.match(image_id)
        if match is None:
            summary.skipped.append((image_id, "id not NNN_frontal or NNN_camK_D"))
            continue
        camera = "frontal" if match.group(2) == "frontal" else f"cam{int(match.group(3))}"
        if camera in ("cam6", "cam7", "cam8"):
            summary.notes["infrared camera dropped"] += 1
            continue
        if len(fields) - 1 < len(names):
            raise ValueError(f"{txt}:{line_no}: {image_id} has {len(fields) - 1} landmark columns, "
                             f"layout {layout!r} needs {len(names)}")
        try:
            values = [float(v) if n != "_" else 0.0 for n, v in zip(names, fields[1:], strict=False)]
        except ValueError:
            raise ValueError(f"{txt}:{line_no}: non-numeric landmark in {fields[1:len(names) + 1]}") from None
        split = "gallery" if camera == "frontal" else "probe"
        distance = 0 if camera == "frontal" else int(match.group(4))
        tasks.append((root / images_dir / f"{image_id}{image_ext}", scface_points(values, names), passthrough))
        rows.append({"name": image_id, "label": int(match.group(1)), "split": split, "camera": camera,
                     "distance": distance})

    def items():
        for row, img in zip(rows, _ordered_map(_scface_task, tasks, workers, "scface"), strict=True):
            if img is None:
                summary.skipped.append((row["name"], "image missing or unreadable"))
                continue
            summary.packed[row["split"] if row["split"] == "gallery" else f"probe d{row['distance']}"] += 1
            yield img, row

    summary.out_dir = write_packed_set(Path(out_root) / "scface", items(),
                                       ["index", "name", "label", "split", "camera", "distance"],
                                       extra_files={f"meta/{txt.name}": txt})
    return summary


# --------------------------------------------------------------------------- IJB-B / IJB-C

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
    img = _read(path)
    if img is None:
        return None, "image missing or unreadable"
    return align_face(img, points, SIZE), ""


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
    black = np.zeros((SIZE, SIZE, 3), np.uint8)

    def items():
        for row, (img, reason) in zip(rows, _ordered_map(_ijb_task, tasks, workers, name), strict=True):
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


# --------------------------------------------------------------------------- your own photos: identity folders

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
        if img.shape[:2] == (SIZE, SIZE) and path.suffix.lower() in (".jpg", ".jpeg"):
            return data, ""  # already aligned: keep the bytes, no re-encoding loss
        return _jpeg(align_face(img, None, SIZE)), ""
    if mode == "landmarks":
        if points is None:
            return None, "no landmarks for this image in the landmark file"
        return _jpeg(align_face(img, points, SIZE)), ""
    boxes, landmarks = _MTCNN.detect(img)
    if len(boxes) == 0:
        return None, "no face detected"
    return _jpeg(align_face(img, landmarks[pick_face(boxes, img.shape)], SIZE)), ""


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
    stage = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        results = _ordered_map(_folder_task, tasks, workers, "folders", _init_mtcnn,
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
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            os.replace(out, old)
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    summary.out_dir = out
    summary.notes[f"identities with images: {len(per_identity)}"] += 1
    return summary


def _duplicate_images(paths: list[Path], identities: list[str]) -> dict[str, list[str]]:
    """sha1 -> the identities holding that exact file, for files found under more than one identity."""
    seen: dict[str, set[str]] = {}
    for path, ident in zip(paths, identities, strict=True):
        seen.setdefault(hashlib.sha1(path.read_bytes()).hexdigest(), set()).add(ident)
    return {d: sorted(ids) for d, ids in seen.items() if len(ids) > 1}


# --------------------------------------------------------------------------- command line

def main(argv=None) -> Summary:
    parser = argparse.ArgumentParser(prog="python -m dataset.prepare", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="dataset", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", required=True, help="the dataset's download folder")
    common.add_argument("--out", required=True, help="validation root; the set goes to <out>/<set name>")
    common.add_argument("--workers", type=int, default=1, help="processes for decoding/aligning")

    tf = sub.add_parser("tinyface", parents=[common], help="TinyFace (aligned release, or raw + MTCNN)")
    tf.add_argument("--source", choices=("auto", "aligned", "raw"), default="auto")
    tf.add_argument("--mtcnn-weights", help="MTCNN weights for raw images (default: $FACE_MTCNN_WEIGHTS or cache)")
    tf.add_argument("--min-face-size", type=float, default=20.0)

    sc = sub.add_parser("scface", parents=[common], help="SCface (all.txt landmarks, 4-point template)")
    sc.add_argument("--landmarks", default="all.txt", help="landmark file relative to --root")
    sc.add_argument("--images-dir", default="images", help="image folder relative to --root (<id><ext> inside)")
    sc.add_argument("--image-ext", default=".jpg")
    sc.add_argument("--layout", default=SCFACE_LAYOUT, help="names of the columns after the id (see docs)")
    sc.add_argument("--passthrough", action="store_true", help="images are already aligned: do not warp")

    ij = sub.add_parser("ijb", parents=[common], help="IJB-B / IJB-C (loose_crop + meta/)")
    ij.add_argument("--name", choices=("ijbb", "ijbc"), help="default: from the meta/ file names")

    fo = sub.add_parser("folders", parents=[common], help="your own photos: <root>/<identity>/<image> -> aligned "
                                                          "identity folders + skipped.csv")
    fo.add_argument("--align", choices=FOLDER_ALIGN, default="mtcnn",
                    help="mtcnn (detect), landmarks (with --landmarks), none (already aligned crops)")
    fo.add_argument("--landmarks", help="file of '<identity>/<image> x1 y1 ... x5 y5' lines: align without a detector")
    fo.add_argument("--mtcnn-weights", help="MTCNN weights (default: $FACE_MTCNN_WEIGHTS or cache)")
    fo.add_argument("--min-face-size", type=float, default=20.0)

    a = parser.parse_args(argv)
    if a.dataset == "tinyface":
        summary = prepare_tinyface(a.root, a.out, a.source, a.mtcnn_weights, a.min_face_size, a.workers)
    elif a.dataset == "scface":
        summary = prepare_scface(a.root, a.out, a.landmarks, a.images_dir, a.layout, a.image_ext, a.passthrough,
                                 a.workers)
    elif a.dataset == "folders":
        summary = prepare_folders(a.root, a.out, a.landmarks, a.align, a.mtcnn_weights, a.min_face_size, a.workers)
    else:
        summary = prepare_ijb(a.root, a.out, a.name, a.workers)
    print(summary.report())
    return summary


if __name__ == "__main__":
    main()
