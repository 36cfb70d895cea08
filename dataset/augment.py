"""Training augmentations on numpy/OpenCV (no torchvision): callables `np.ndarray (H, W, 3) uint8 BGR -> same`.

- `AdaFaceAugmenter`: crop kept in place on a black canvas -> low resolution -> photometric jitter, each with its own
  probability (0.2 in the AdaFace recipe) (docs/method.md, "Augmentations (`dataset/augment.py`)").
- `QGFaceDegradation`: QGFace's "Ours" L-view degradation: optional crop / rotation / jitter, then always
  downscale to 10-50 % + JPEG 75 + upscale with independently drawn interpolations.
- `RandomHorizontalFlip`, `Compose`.
All randomness comes from the global `np.random` state, so Lightning's per-worker numpy seeding
(`seed_everything(workers=True)`) makes the pipeline reproducible. The configurable ones are registered in
`TRANSFORMS` and built from a config node `{name: adaface, crop_prob: 0.2, ...}` (the project's registry idiom).
"""

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from common.registry import Registry

TRANSFORMS = Registry("transform")

INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)
# ITU-R 601 luma weights in B, G, R order (our images are BGR)
_LUMA_BGR = np.array([0.114, 0.587, 0.299], dtype=np.float32)


def _check_image(img: np.ndarray) -> None:
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"augmentations expect an (H, W, 3) uint8 BGR image, got shape {img.shape} {img.dtype}")


def random_interpolation() -> int:
    return int(INTERPOLATIONS[np.random.randint(len(INTERPOLATIONS))])


def random_resized_crop_box(height: int, width: int, scale: Sequence[float], ratio: Sequence[float]):
    """(top, left, h, w) of a RandomResizedCrop box: area fraction in `scale`, log-uniform aspect ratio in `ratio`;
    10 attempts, then a centre crop with the aspect ratio clamped into `ratio`."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * np.random.uniform(scale[0], scale[1])
        aspect = math.exp(np.random.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = np.random.randint(0, height - h + 1)
            left = np.random.randint(0, width - w + 1)
            return int(top), int(left), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def crop_on_black_canvas(img: np.ndarray, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)) -> np.ndarray:
    """AdaFace crop: the box keeps its place, everything outside it becomes black; no resize."""
    top, left, h, w = random_resized_crop_box(img.shape[0], img.shape[1], scale, ratio)
    out = np.zeros_like(img)
    out[top:top + h, left:left + w] = img[top:top + h, left:left + w]
    return out


def random_resized_crop(img: np.ndarray, scale=(0.8, 1.0), ratio=(3 / 4, 4 / 3)) -> np.ndarray:
    """Classic RandomResizedCrop back to the input size (bilinear)."""
    top, left, h, w = random_resized_crop_box(img.shape[0], img.shape[1], scale, ratio)
    return cv2.resize(img[top:top + h, left:left + w], (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)


def down_up(img: np.ndarray, side_ratio: float, jpeg_quality: int | None = None) -> np.ndarray:
    """Resize to int(side_ratio * side) with a random interpolation, optionally JPEG round-trip, resize back with an
    independently drawn interpolation."""
    height, width = img.shape[:2]
    small = cv2.resize(img, (max(1, int(side_ratio * width)), max(1, int(side_ratio * height))),
                       interpolation=random_interpolation())
    if jpeg_quality is not None:
        ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise RuntimeError("down_up: JPEG encoding failed")
        small = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return cv2.resize(small, (width, height), interpolation=random_interpolation())


def color_jitter(img: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """Brightness, contrast and saturation factors drawn from U(1-x, 1+x), applied in random order (hue 0)."""
    out = img.astype(np.float32)
    for op in np.random.permutation(3):
        if op == 0 and brightness > 0:
            out = out * np.random.uniform(max(0.0, 1 - brightness), 1 + brightness)
        elif op == 1 and contrast > 0:
            factor = np.random.uniform(max(0.0, 1 - contrast), 1 + contrast)
            mean = float((out @ _LUMA_BGR).mean())
            out = out * factor + mean * (1 - factor)
        elif op == 2 and saturation > 0:
            factor = np.random.uniform(max(0.0, 1 - saturation), 1 + saturation)
            gray = (out @ _LUMA_BGR)[..., None]
            out = out * factor + gray * (1 - factor)
        out = np.clip(out, 0, 255)
    return np.rint(out).astype(np.uint8)


def rotate(img: np.ndarray, max_degrees: float) -> np.ndarray:
    """Rotation by U(-max, max) degrees about the centre, black border."""
    angle = np.random.uniform(-max_degrees, max_degrees)
    height, width = img.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), angle, 1.0)
    return cv2.warpAffine(img, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=(0, 0, 0))


@TRANSFORMS.register("adaface")
class AdaFaceAugmenter:
    """AdaFace's augmenter: crop (black canvas) -> low-res -> photometric, each applied with its own probability."""

    def __init__(self, crop_prob: float = 0.2, low_res_prob: float = 0.2, photometric_prob: float = 0.2,
                 crop_scale: Sequence[float] = (0.2, 1.0), crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
                 low_res_range: Sequence[float] = (0.2, 1.0), brightness: float = 0.5, contrast: float = 0.5,
                 saturation: float = 0.5) -> None:
        self.crop_prob, self.low_res_prob, self.photometric_prob = crop_prob, low_res_prob, photometric_prob
        self.crop_scale, self.crop_ratio = tuple(crop_scale), tuple(crop_ratio)
        self.low_res_range = tuple(low_res_range)
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    def __call__(self, img: np.ndarray) -> np.ndarray:
        _check_image(img)
        # one draw per stage, always made, so the random stream does not depend on earlier outcomes
        if np.random.random() < self.crop_prob:
            img = crop_on_black_canvas(img, self.crop_scale, self.crop_ratio)
        if np.random.random() < self.low_res_prob:
            img = down_up(img, np.random.uniform(*self.low_res_range))
        if np.random.random() < self.photometric_prob:
            img = color_jitter(img, self.brightness, self.contrast, self.saturation)
        return img

    def __repr__(self) -> str:
        return (f"AdaFaceAugmenter(crop={self.crop_prob}, low_res={self.low_res_prob}, "
                f"photometric={self.photometric_prob})")


@TRANSFORMS.register("qgface_ours")
class QGFaceDegradation:
    """QGFace "Ours" L-view degradation: optional crop (RandomResizedCrop scale 0.8-1), rotation (<= 45 deg) and
    jitter (0.2/0.2/0.2), each with its own probability (the paper only says "higher than AdaFace's 0.2"; 0.5 here),
    then ALWAYS: downscale to int(U(0.1, 0.5) * side) with a random interpolation, JPEG at quality 75, upscale with
    an independently drawn interpolation. Geometric and photometric changes come first so the degradation (camera
    resolution and compression) is the last thing applied, as it would be in a capture pipeline."""

    def __init__(self, scale_range: Sequence[float] = (0.1, 0.5), jpeg_quality: int = 75, crop_prob: float = 0.5,
                 crop_scale: Sequence[float] = (0.8, 1.0), crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
                 rotation_prob: float = 0.5, max_rotation: float = 45.0, jitter_prob: float = 0.5,
                 brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2) -> None:
        self.scale_range, self.jpeg_quality = tuple(scale_range), jpeg_quality
        self.crop_prob, self.crop_scale, self.crop_ratio = crop_prob, tuple(crop_scale), tuple(crop_ratio)
        self.rotation_prob, self.max_rotation = rotation_prob, max_rotation
        self.jitter_prob = jitter_prob
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    def __call__(self, img: np.ndarray) -> np.ndarray:
        _check_image(img)
        if np.random.random() < self.crop_prob:
            img = random_resized_crop(img, self.crop_scale, self.crop_ratio)
        if np.random.random() < self.rotation_prob:
            img = rotate(img, self.max_rotation)
        if np.random.random() < self.jitter_prob:
            img = color_jitter(img, self.brightness, self.contrast, self.saturation)
        return down_up(img, np.random.uniform(*self.scale_range), jpeg_quality=self.jpeg_quality)

    def __repr__(self) -> str:
        return (f"QGFaceDegradation(scale={self.scale_range}, jpeg={self.jpeg_quality}, crop={self.crop_prob}, "
                f"rotation={self.rotation_prob}, jitter={self.jitter_prob})")


class RandomHorizontalFlip:
    """Mirror the image with probability p (a separate transform, applied after the others)."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: np.ndarray) -> np.ndarray:
        if np.random.random() < self.p:
            return np.ascontiguousarray(img[:, ::-1])
        return img

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Compose:
    """Apply transforms in order (None entries are skipped)."""

    def __init__(self, transforms: Sequence[Callable[[np.ndarray], np.ndarray] | None]) -> None:
        self.transforms = [t for t in transforms if t is not None]

    def __call__(self, img: np.ndarray) -> np.ndarray:
        for transform in self.transforms:
            img = transform(img)
        return img

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"
