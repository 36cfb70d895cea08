"""Torch datasets over RecordIO packs, image lists, image folders and verification `.bin` files.

Every dataset returns images as `torch.uint8` tensors [3, H, W] in BGR order; transforms are callables on the
numpy BGR image (H, W, 3 uint8) applied before the conversion. Decoding happens lazily in `__getitem__`, and the
RecordIO reader opens its file per process, so all of these are safe in forked DataLoader workers.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from common.images import IMAGE_EXTENSIONS
from dataset import recordio
from dataset.convert import list_identity_folders
from dataset.decode import decode_checked
from dataset.formats import image_keys, label_to_int, load_bin, open_rec

Transform = Callable[[np.ndarray], np.ndarray]


def to_chw_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 (or HxW grayscale) uint8 BGR array -> uint8 tensor [3, H, W] (no scaling, no colour change)."""
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {img.shape}")
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def decode_image(payload, source: str) -> np.ndarray:
    """Encoded bytes -> BGR uint8 array; `source` (file and key) names the culprit when decoding fails or libjpeg
    reports corrupt data (dataset.decode: never silent). `python -m dataset.convert rec-info FILE --check` lists every
    bad record of a pack."""
    return decode_checked(payload, source)


def unpack_view(record: bytes):
    """Like `recordio.unpack` but the payload is a zero-copy memoryview (the hot path of training)."""
    if len(record) < 24:
        return recordio.unpack(record)  # raises the descriptive error
    flag = int.from_bytes(record[:4], "little")
    if flag == 0:
        return recordio.IRHeader(*struct.unpack_from("<IfQQ", record)), memoryview(record)[24:]
    header, payload = recordio.unpack(record)
    return header, payload


def read_image_file(path) -> np.ndarray:
    data = Path(path).read_bytes()
    return decode_image(data, str(path))


def _finish(img: np.ndarray, transform: Transform | None, return_numpy: bool):
    if transform is not None:
        img = transform(img)
    return img if return_numpy else to_chw_tensor(img)


class TrainRecordDataset(Dataset):
    """Training set over an InsightFace-style `train.rec` + `train.idx` -> `(img, label:int)`.

    Handles header0 (key 0, flag > 0, empty payload; images at keys 1..N) or a plain index (every key an image),
    scalar or array labels (`label[0]` is the class). `swap_rb=True` reverses channels after decoding, for files
    QGFace wrote with `is_origin=False` (R/B-swapped JPEGs). With `return_numpy=True` the image stays a BGR numpy
    array (for `TwoViewDataset`).

    Attributes: `keys` (record keys, dataset order), `labels` (np.int64 per item), `num_classes` (max label + 1).
    """

    def __init__(self, rec_path, transform: Transform | None = None, swap_rb: bool = False,
                 return_numpy: bool = False, idx_path=None):
        self.rec_path = str(rec_path)
        self.transform = transform
        self.swap_rb = swap_rb
        self.return_numpy = return_numpy
        self.record = open_rec(rec_path, idx_path)
        self.keys = image_keys(self.record)
        if not self.keys:
            raise ValueError(f"{self.rec_path}: no image records")
        self.labels = self._scan_labels()
        self.num_classes = int(self.labels.max()) + 1

    def _scan_labels(self) -> np.ndarray:
        labels = self._labels_from_identity_records()
        if labels is not None:
            return labels
        # One small read per record: the header, not the image (about 10 us each).
        labels = np.empty(len(self.keys), dtype=np.int64)
        for i, key in enumerate(self.keys):
            labels[i] = label_to_int(self.record.read_header_idx(key).label)
        return labels

    def _labels_from_identity_records(self) -> np.ndarray | None:
        """InsightFace packs list each identity's key range after the images; labelling each range with its
        first image's label needs two reads per identity instead of one per image (seconds, not a minute,
        for MS1MV2). Returns None when the layout is not exactly that, and the caller scans every header."""
        if self.keys[0] != 1 or self.keys[-1] != len(self.keys):
            return None
        header0 = self.record.read_header_idx(0)
        if header0.flag < 2:
            return None
        first_id, end_id = int(header0.label[0]), int(header0.label[1])
        labels = np.empty(len(self.keys), dtype=np.int64)
        expected_start = 1
        for ident_key in range(first_id, end_id):
            if ident_key not in self.record.idx:
                return None
            h = self.record.read_header_idx(ident_key)
            if h.flag != 2:
                return None
            start, end = int(h.label[0]), int(h.label[1])
            if start != expected_start or end <= start:
                return None
            labels[start - 1 : end - 1] = label_to_int(self.record.read_header_idx(start).label)
            expected_start = end
        return labels if expected_start == len(self.keys) + 1 else None

    def __len__(self) -> int:
        return len(self.keys)

    def load(self, index: int) -> tuple[np.ndarray, int]:
        """Decoded BGR image (after `swap_rb`, before the transform) and label of item `index`."""
        key = self.keys[index]
        header, payload = unpack_view(self.record.read_idx(key))
        img = decode_image(payload, f"{self.rec_path} key {key}")
        if self.swap_rb:
            img = np.ascontiguousarray(img[:, :, ::-1])
        return img, label_to_int(header.label)

    def __getitem__(self, index: int):
        img, label = self.load(index)
        return _finish(img, self.transform, self.return_numpy), label


class TwoViewDataset(Dataset):
    """Two views of each item of a base dataset returning numpy BGR images -> `(img_l, img_h, label)`.

    `view_l` / `view_h` are transforms on the numpy image (e.g. the low- and high-quality views of QGFace).
    """

    def __init__(self, base: Dataset, view_l: Transform, view_h: Transform):
        self.base = base
        self.view_l = view_l
        self.view_h = view_h
        self.labels = getattr(base, "labels", None)
        self.num_classes = getattr(base, "num_classes", None)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        img, label = self.base[index]
        if not isinstance(img, np.ndarray):
            raise TypeError("TwoViewDataset needs a base dataset returning numpy images (e.g. return_numpy=True)")
        return to_chw_tensor(self.view_l(img)), to_chw_tensor(self.view_h(img)), label


class ListDataset(Dataset):
    """Images given by path -> `(img, label)` when labels are given, else `(img, index)` (evaluation)."""

    def __init__(self, paths: Sequence, labels: Sequence | None = None, transform: Transform | None = None,
                 root=None):
        root = Path(root) if root is not None else None
        self.paths = [root / p if root is not None else Path(p) for p in paths]
        if labels is not None and len(labels) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(labels)} labels")
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        img = _finish(read_image_file(self.paths[index]), self.transform, False)
        target = int(self.labels[index]) if self.labels is not None else index
        return img, target


class ImageFolderDataset(ListDataset):
    """`root/<identity>/<image>` tree -> `(img, label)`; labels follow the sorted identity folder names."""

    def __init__(self, root, transform: Transform | None = None):
        folders = list_identity_folders(root)
        if not folders:
            raise ValueError(f"{root}: no identity folders with images ({', '.join(IMAGE_EXTENSIONS)})")
        self.classes = [name for name, _ in folders]
        paths = [p for _, files in folders for p in files]
        labels = [label for label, (_, files) in enumerate(folders) for _ in files]
        super().__init__(paths, labels, transform)
        self.num_classes = len(self.classes)


class BinPairsDataset(Dataset):
    """Images of a verification `.bin` -> `(img, index)`; pair k is items 2k, 2k+1, `issame[k]` its label."""

    def __init__(self, bin_path, transform: Transform | None = None):
        self.bin_path = str(bin_path)
        self.bins, self.issame = load_bin(bin_path)
        self.transform = transform
        if len(self.bins) != 2 * len(self.issame):
            raise ValueError(f"{self.bin_path}: {len(self.bins)} images for {len(self.issame)} pairs (expected 2 each)")
        for index in sorted({0, len(self.bins) - 1}) if self.bins else ():  # fail now, not after a training epoch
            decode_image(self.bins[index], f"{self.bin_path} image {index}")

    def __len__(self) -> int:
        return len(self.bins)

    def __getitem__(self, index: int):
        img = decode_image(self.bins[index], f"{self.bin_path} image {index}")
        return _finish(img, self.transform, False), index


class DegradedImagesDataset(Dataset):
    """Image files at named degradation levels (`dataset.synthetic.quality.DEGRADATIONS`) -> `(img, index)`.

    `items` lists `(path index, level name)`; item k is `paths[i]` read, resized to `size` if needed, and degraded at
    that level (deterministic). Used by the folder evaluation protocol
    (docs/evaluation.md, "Your own faces: the `folders` protocol")."""

    def __init__(self, paths: Sequence, items: Sequence[tuple[int, str]], size: int = 112,
                 transform: Transform | None = None):
        from dataset.synthetic.quality import check_degradation

        self.paths = [Path(p) for p in paths]
        self.items = [(int(i), str(level)) for i, level in items]
        for level in sorted({level for _, level in self.items}):
            check_degradation(level)
        self.size, self.transform = int(size), transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        import cv2

        from dataset.synthetic.quality import degrade

        path_index, level = self.items[index]
        img = read_image_file(self.paths[path_index])
        if img.shape[:2] != (self.size, self.size):
            img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return _finish(degrade(img, level), self.transform, False), index
