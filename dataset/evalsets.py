"""Packed evaluation sets: aligned faces in RecordIO plus a per-image ``meta.csv``.

Layout of a packed set directory::

    images.rec / images.idx   keys 0..N-1 in order; IRHeader label = identity (-1 = none); payload = JPEG (BGR, 112x112)
    meta.csv                  header row; row i describes key i; always ``index,name,label`` plus set-specific columns
    meta/...                  protocol files copied verbatim where the protocol needs them (IJB pair lists)

TinyFace, SCface and IJB-B/C are all stored this way, by the synthetic benchmark and by ``dataset.prepare`` alike,
so validation has one reader for every identification/template protocol.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import cv2
import numpy as np

from common.atomic import atomic_write, recover_dir, staged_dir
from dataset import recordio
from dataset.decode import decode_checked

REQUIRED_COLUMNS = ("index", "name", "label")
JPEG_QUALITY = 95


def _encode(img_or_bytes, quality: int) -> bytes:
    if isinstance(img_or_bytes, (bytes, bytearray, memoryview)):
        return bytes(img_or_bytes)
    ok, buf = cv2.imencode(".jpg", img_or_bytes, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def write_packed_set(
    out_dir,
    items: Iterable,
    columns: Iterable[str],
    extra_files: Mapping[str, object] | None = None,
    quality: int = JPEG_QUALITY,
) -> Path:
    """Write a packed set atomically: everything goes to a temporary sibling directory that is renamed at the end.

    ``items`` yields ``(image, row)``: ``image`` is a BGR uint8 array or already-encoded JPEG bytes, ``row`` a dict
    with at least ``name`` and ``label`` (``index`` is filled in). ``extra_files`` maps a relative path inside the set
    to a source ``Path`` (copied), ``str`` or ``bytes`` content.
    """
    out_dir = Path(out_dir)
    columns = list(columns)
    for required in REQUIRED_COLUMNS[::-1]:
        if required not in columns:
            columns.insert(0, required)
    with staged_dir(out_dir) as tmp_dir:  # the previous set stays whole until the new one is in place
        record = recordio.MXIndexedRecordIO(str(tmp_dir / "images.idx"), str(tmp_dir / "images.rec"), "w")
        with atomic_write(tmp_dir / "meta.csv", "w", newline="") as meta_file:
            writer = csv.DictWriter(meta_file, fieldnames=columns, extrasaction="raise")
            writer.writeheader()
            for index, (image, row) in enumerate(items):
                row = dict(row, index=index)
                missing = [c for c in columns if c not in row]
                if missing:
                    raise ValueError(f"row {index} ({row.get('name')!r}) lacks columns {missing}")
                header = recordio.IRHeader(0, float(row["label"]), index, 0)
                record.write_idx(index, recordio.pack(header, _encode(image, quality)))
                writer.writerow(row)
        record.close()
        for rel_path, content in (extra_files or {}).items():
            target = tmp_dir / rel_path
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(str(content))
    return out_dir


def _column_array(values: list[str]) -> np.ndarray:
    """Integers stay integers, numbers become float64, anything else stays a string array."""
    for cast, dtype in ((int, np.int64), (float, np.float64)):
        try:
            return np.array([cast(v) for v in values], dtype=dtype)
        except ValueError:
            continue
    return np.array(values, dtype=str)


class PackedSet:
    """Read-only view of a packed set: ``meta`` columns as arrays and random access to decoded images."""

    def __init__(self, directory, swap_rb: bool = False):
        self.directory = Path(directory)
        self.swap_rb = swap_rb
        if not self.directory.is_dir():  # a writer killed between its two renames: the previous set comes back
            recover_dir(self.directory)
        meta_path = self.directory / "meta.csv"
        for path in (meta_path, self.directory / "images.rec", self.directory / "images.idx"):
            if not path.is_file():
                raise FileNotFoundError(
                    f"packed evaluation set incomplete: {path} is missing (build it with `python -m dataset.prepare` "
                    "or `python -m dataset.synthetic`)"
                )
        with open(meta_path, newline="") as meta_file:
            reader = csv.DictReader(meta_file)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{meta_path}: missing columns {missing}")
            rows = list(reader)
        self.meta = {name: _column_array([row[name] for row in rows]) for name in reader.fieldnames}
        self._record = recordio.MXIndexedRecordIO(
            str(self.directory / "images.idx"), str(self.directory / "images.rec"), "r"
        )
        if len(self._record.keys) != len(rows):
            raise ValueError(
                f"{self.directory}: meta.csv has {len(rows)} rows but images.idx has {len(self._record.keys)} keys"
            )

    def __len__(self) -> int:
        return len(self.meta["index"])

    def read_image(self, index: int) -> np.ndarray:
        _, payload = recordio.unpack(self._record.read_idx(int(index)))
        img = decode_checked(payload, f"{self.directory / 'images.rec'} record {index}")
        return img[:, :, ::-1].copy() if self.swap_rb else img


class PackedSetDataset:
    """Map-style dataset over a packed set returning ``(uint8 CHW BGR tensor, index)``."""

    def __init__(self, directory, swap_rb: bool = False):
        self.packed = PackedSet(directory, swap_rb=swap_rb)

    def __len__(self) -> int:
        return len(self.packed)

    def __getitem__(self, index: int):
        import torch

        img = self.packed.read_image(index)
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), index
