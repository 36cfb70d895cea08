"""The worker side of every preparer: an ordered process pool with a progress bar, one detector per process, and
reading an image file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from common.parallel import ordered_map

CROP_SIZE = 112  # side of every aligned crop a preparer writes


def map_images(fn, tasks: list, workers: int, desc: str, initializer=None, initargs=()):
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


def read_image(path: Path) -> np.ndarray | None:
    return cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None


_MTCNN = None  # this process's detector, set by `init_mtcnn` (a pool initializer)


def init_mtcnn(weights, min_face_size):
    global _MTCNN
    if weights is not False:  # False = aligned release, no detector needed
        from alignment.mtcnn import MTCNN

        _MTCNN = MTCNN(weights, min_face_size=min_face_size)


def detector():
    """The detector `init_mtcnn` loaded in this process."""
    if _MTCNN is None:
        raise RuntimeError("no MTCNN detector in this process: run init_mtcnn(weights, min_face_size) first")
    return _MTCNN
