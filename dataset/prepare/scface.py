"""SCface (``all.txt`` landmark columns, 4-point template) -> the packed set ``<out>/scface``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from alignment.align import align_face
from dataset.evalsets import write_packed_set
from dataset.prepare.summary import Summary
from dataset.prepare.workers import CROP_SIZE, map_images, read_image

SCFACE_LAYOUT = "lex,ley,rex,rey,nx,ny,mx,my"
SCFACE_TOKENS = {"lex", "ley", "rex", "rey", "nx", "ny", "mx", "my", "mlx", "mly", "mrx", "mry", "_"}
SCFACE_ID = re.compile(r"^(\d+)_(frontal|cam(\d+)_([123]))$")


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


def scface_points_from_columns(values: list[float], names: list[str]) -> np.ndarray:
    """The 4 template points (eyes, nose tip, mouth centre) from one ``all.txt`` row's columns named by the layout."""
    col = dict(zip(names, values, strict=False))
    if "mx" in col:
        mouth = [col["mx"], col["my"]]
    else:
        mouth = [(col["mlx"] + col["mrx"]) / 2, (col["mly"] + col["mry"]) / 2]
    return np.array([[col["lex"], col["ley"]], [col["rex"], col["rey"]], [col["nx"], col["ny"]], mouth], np.float64)


def _scface_task(task):
    path, points, passthrough = task
    img = read_image(path)
    if img is None:
        return None
    return align_face(img, None if passthrough else points, CROP_SIZE)


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
        points = scface_points_from_columns(values, names)
        tasks.append((root / images_dir / f"{image_id}{image_ext}", points, passthrough))
        rows.append({"name": image_id, "label": int(match.group(1)), "split": split, "camera": camera,
                     "distance": distance})

    def items():
        for row, img in zip(rows, map_images(_scface_task, tasks, workers, "scface"), strict=True):
            if img is None:
                summary.skipped.append((row["name"], "image missing or unreadable"))
                continue
            summary.packed[row["split"] if row["split"] == "gallery" else f"probe d{row['distance']}"] += 1
            yield img, row

    summary.out_dir = write_packed_set(Path(out_root) / "scface", items(),
                                       ["index", "name", "label", "split", "camera", "distance"],
                                       extra_files={f"meta/{txt.name}": txt})
    return summary
