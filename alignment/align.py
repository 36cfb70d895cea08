"""Face alignment: least-squares similarity transform to the ArcFace 112x112 template.

One module used everywhere (training-set packing, IJB/TinyFace/SCface preparation, inference), so every path
crops faces the same way.
"""

from __future__ import annotations

import cv2
import numpy as np

# Image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner (x, y) at 112x112.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def scface_template_4pt() -> np.ndarray:
    """QGFace's 4-point template for SCface: both eyes, nose, and the midpoint of the mouth corners."""
    mouth_mid = ARCFACE_TEMPLATE[3:5].mean(axis=0, keepdims=True)
    return np.concatenate([ARCFACE_TEMPLATE[:3], mouth_mid], axis=0)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Closed-form least-squares similarity (Umeyama 1991, no reflection) mapping ``src`` points onto ``dst``.

    Returns the 2x3 matrix for ``cv2.warpAffine``. Same solution as scikit-image's SimilarityTransform.estimate;
    unlike ``cv2.estimateAffinePartial2D`` there is no RANSAC, so the crop is deterministic.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need matching point sets of at least 2 points, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection would fit better: forbid it
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    src_var = (src_c**2).sum() / len(src)
    if src_var == 0:
        raise ValueError("degenerate landmarks: all points coincide")
    scale = (s * d).sum() / src_var
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix


def template_for(num_points: int, size: int = 112) -> np.ndarray:
    """The 5-point ArcFace template or SCface's 4-point one, scaled to a square output of ``size`` pixels."""
    if num_points == 5:
        template = ARCFACE_TEMPLATE
    elif num_points == 4:
        template = scface_template_4pt()
    else:
        raise ValueError(f"alignment needs 5 (or SCface's 4) landmarks, got {num_points}")
    return template * (size / 112.0)


def align_face(img: np.ndarray, landmarks, size: int = 112) -> np.ndarray:
    """Warp ``img`` so its landmarks land on the template; black border outside the source image.

    ``landmarks`` is None for crops that are already aligned: they pass through (resized if needed).
    """
    if landmarks is None:
        if img.shape[:2] != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        return img
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    matrix = estimate_similarity(pts, template_for(len(pts), size))
    return cv2.warpAffine(img, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def pick_face(boxes: np.ndarray, image_shape) -> int:
    """Index of the face to keep in a photo: the largest box; on a tie, the one whose centre is nearest the image
    centre (then the first). One rule for dataset preparation and inference
    (docs/evaluation.md, "Your own faces: preparation")."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if len(boxes) == 0:
        raise ValueError("pick_face needs at least one box")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    largest = np.flatnonzero(np.isclose(area, area.max(), rtol=1e-9, atol=0.0))
    if len(largest) == 1:
        return int(largest[0])
    h, w = image_shape[:2]
    centres = np.stack([(boxes[largest, 0] + boxes[largest, 2]) / 2, (boxes[largest, 1] + boxes[largest, 3]) / 2], 1)
    dist = np.hypot(centres[:, 0] - w / 2, centres[:, 1] - h / 2)
    return int(largest[int(np.argmin(dist))])
