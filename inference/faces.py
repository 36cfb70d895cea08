"""From a photo to an aligned 112x112 face: MTCNN's largest face, aligned to the template, or a passthrough crop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

ALIGN_MODES = ("auto", "mtcnn", "none")
INPUT_SIZE = 112


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
            from alignment.mtcnn import MTCNN

            self._mtcnn = MTCNN(self.mtcnn_weights, min_face_size=self.min_face_size, device=self.device)
        return self._mtcnn

    def __call__(self, path: Path) -> FaceCrop:
        from alignment.align import align_face, pick_face

        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            return FaceCrop(path, None, reason="unreadable image")
        passthrough = self.align == "none" or (self.align == "auto" and img.shape[:2] == (INPUT_SIZE, INPUT_SIZE))
        if passthrough:
            return FaceCrop(path, align_face(img, None, INPUT_SIZE), method="passthrough", num_faces=1)
        boxes, landmarks = self.mtcnn.detect(img)
        if len(boxes) == 0:
            return FaceCrop(path, None, reason="no face detected")
        best = pick_face(boxes, img.shape)  # group photos: the largest face, a tie to the one nearest the centre
        crop = align_face(img, landmarks[best], INPUT_SIZE)
        return FaceCrop(path, crop, "mtcnn", boxes[best], landmarks[best], num_faces=len(boxes))
