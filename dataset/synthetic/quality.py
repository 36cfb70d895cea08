"""Image-quality degradations and capture for the synthetic benchmark: loose-crop placement, blur, downscale to a
face size of 8-32 px, sensor noise and JPEG; plus re-alignment of a captured loose crop with ``alignment.align``.

The three primitives (``gaussian_blur``, ``downscale``, ``jpeg_roundtrip``) are the one place degradations are made:
the capture of the synthetic benchmark and the named ``DEGRADATIONS`` of the folder evaluation protocol
(docs/evaluation.md, "Your own faces: the `folders` protocol") both use them."""

from __future__ import annotations

import math

import cv2
import numpy as np

from alignment.align import align_face
from dataset.synthetic.render import noise_patch

# Face size (pixels across the 112-px aligned crop) and nuisance ranges per quality level. ``low`` is the harsh level
# (10-16 px) used for SCface d1 and the worst IJB media; ``hq`` keeps full resolution and only re-encodes.
LEVELS = {
    "hq": {"px": None, "blur": (0.0, 0.0), "noise": (0.0, 1.5), "jpeg": (80, 95)},
    "high": {"px": (24, 32), "blur": (0.0, 0.6), "noise": (0.0, 3.0), "jpeg": (60, 90)},
    "mid": {"px": (16, 24), "blur": (0.2, 0.9), "noise": (1.0, 5.0), "jpeg": (45, 85)},
    "low": {"px": (10, 16), "blur": (0.3, 1.0), "noise": (2.0, 7.0), "jpeg": (35, 75)},
    "tiny": {"px": (8, 24), "blur": (0.2, 1.0), "noise": (1.0, 6.0), "jpeg": (40, 80)},
}
_INTERPOLATIONS = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST)


# Named degradation levels of the folder evaluation protocol, applied to an aligned 112x112 crop in this order:
# Gaussian blur (sigma in pixels of the crop), resolution (the face is brought down to `px` pixels across and back up),
# JPEG quality. `clean` leaves the image untouched.
DEGRADATIONS = {
    "clean": {},
    "blur": {"blur": 2.0},
    "blur_strong": {"blur": 4.0},
    "lowres": {"px": 20},
    "lowres_tiny": {"px": 12},
    "jpeg": {"jpeg": 15},
    "jpeg_strong": {"jpeg": 5},
    "mixed": {"blur": 1.0, "px": 20, "jpeg": 30},
}


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def downscale(img: np.ndarray, factor: float, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
    """``img`` resized by ``factor`` (at least 4 px a side)."""
    h, w = img.shape[:2]
    size = (max(4, int(round(w * factor))), max(4, int(round(h * factor))))
    return cv2.resize(img, size, interpolation=interpolation)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    return decode_jpeg(encode_jpeg(img, quality))


def check_degradation(name: str) -> dict:
    """The spec of a named level; an unknown name raises, listing the known ones."""
    if name not in DEGRADATIONS:
        raise ValueError(f"unknown degradation level {name!r}; known levels: {', '.join(DEGRADATIONS)}")
    return DEGRADATIONS[name]


def degrade(img: np.ndarray, level: str) -> np.ndarray:
    """An aligned crop at a named level (deterministic: same input, same output), same size as the input."""
    spec = check_degradation(level)
    out = img
    if spec.get("blur"):
        out = gaussian_blur(out, spec["blur"])
    if spec.get("px"):
        h, w = out.shape[:2]
        out = cv2.resize(downscale(out, spec["px"] / 112.0), (w, h), interpolation=cv2.INTER_LINEAR)
    if spec.get("jpeg"):
        out = jpeg_roundtrip(out, spec["jpeg"])
    return out


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def loose_placement(r: np.random.Generator, canvas: int, face_scale=(0.8, 1.0), max_rot_deg: float = 8.0):
    """A random similarity (2x3) that puts the 112-px aligned frame inside a ``canvas``-px loose crop."""
    s = r.uniform(*face_scale)
    ang = math.radians(r.uniform(-max_rot_deg, max_rot_deg))
    lin = s * np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    centre = np.array([56.0, 60.0])
    slack = max(0.0, (canvas - 112 * s) / 2 * 0.5)
    target = np.array([canvas / 2, canvas / 2]) + r.uniform(-slack, slack, 2)
    return np.concatenate([lin, (target - lin @ centre)[:, None]], axis=1), s


def capture(img: np.ndarray, landmarks: np.ndarray, level: str, r: np.random.Generator, face_px_at_full: float = 112.0,
            landmark_noise: float = 0.0):
    """Degrade ``img`` (a rendered crop whose face spans ``face_px_at_full`` pixels) to a quality ``level``.

    Returns ``(jpeg_bytes, landmarks)`` of the captured (possibly small) image, with the 5 landmarks rescaled into its
    pixel grid and optionally perturbed like a detector's output (noise in units of the captured face's 112 px).
    """
    spec = LEVELS[level]
    out, lm = img, np.asarray(landmarks, np.float64)
    if spec["px"] is not None:
        px = r.uniform(*spec["px"])
        k = px / face_px_at_full
        blur = r.uniform(*spec["blur"])
        if r.uniform() < 0.75:  # most cameras low-pass before sampling; the rest alias
            blur = math.hypot(blur, 0.45 / k)
        if blur > 0.05:
            out = gaussian_blur(out, blur)
        h, w = out.shape[:2]
        interp = _INTERPOLATIONS[int(r.choice(4, p=[0.35, 0.3, 0.25, 0.1]))]
        out = downscale(out, k, interp)
        nh, nw = out.shape[:2]
        lm = (lm + 0.5) * np.array([nw / w, nh / h]) - 0.5
        face_px = px
    else:
        face_px = face_px_at_full
    noise = r.uniform(*spec["noise"])
    if noise > 0:
        out = np.clip(out + noise_patch(r, out.shape) * noise + 0.5, 0, 255).astype(np.uint8)
    if landmark_noise > 0:
        lm = lm + r.normal(0, landmark_noise * face_px / 112.0, lm.shape)
    return encode_jpeg(out, int(r.integers(spec["jpeg"][0], spec["jpeg"][1] + 1))), lm


def align_captured(jpeg: bytes, landmarks: np.ndarray) -> np.ndarray:
    """What a real pipeline does to a captured loose crop: decode and align to the 112x112 template."""
    return align_face(decode_jpeg(jpeg), landmarks, size=112)
