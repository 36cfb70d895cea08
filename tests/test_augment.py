"""numpy/OpenCV augmentations: shapes, determinism under np.random.seed, real degradation, black-canvas crop."""

import inspect

import cv2
import numpy as np
import pytest

from dataset.augment import (
    TRANSFORMS,
    AdaFaceAugmenter,
    Compose,
    QGFaceDegradation,
    RandomHorizontalFlip,
    color_jitter,
    crop_on_black_canvas,
    random_resized_crop_box,
)


def _textured(seed=0, size=112):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    img[::8] = 255  # stripes: fine detail that low resolution destroys
    return img


def _detail(img):
    return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def _every_stage(name: str) -> dict:
    """Arguments that switch on every optional stage of a registered transform (each `*_prob` set to 1)."""
    return {arg: 1.0 for arg in inspect.signature(TRANSFORMS.get(name)).parameters if arg.endswith("_prob")}


# every registered transform with its defaults and (where it has optional stages) with all of them on, plus the
# unregistered wrappers
CASES = [pytest.param(TRANSFORMS.build(name), id=name) for name in TRANSFORMS.names()]
CASES += [pytest.param(TRANSFORMS.build(name, **_every_stage(name)), id=f"{name}-every_stage")
          for name in TRANSFORMS.names() if _every_stage(name)]
CASES += [pytest.param(RandomHorizontalFlip(), id="flip"),
          pytest.param(Compose([QGFaceDegradation(), None, RandomHorizontalFlip()]), id="compose")]


@pytest.mark.parametrize("transform", CASES)
def test_shape_dtype_and_determinism(transform):
    img = _textured()
    np.random.seed(123)
    first = [transform(img.copy()) for _ in range(3)]
    np.random.seed(123)
    second = [transform(img.copy()) for _ in range(3)]
    for a, b in zip(first, second, strict=True):
        assert a.shape == img.shape and a.dtype == np.uint8 and a.flags["C_CONTIGUOUS"]
        assert np.array_equal(a, b)


def test_degradation_lowers_detail_always():
    img = _textured()
    degrade = QGFaceDegradation(crop_prob=0.0, rotation_prob=0.0, jitter_prob=0.0)
    np.random.seed(0)
    for _ in range(10):
        out = degrade(img)
        assert _detail(out) < 0.5 * _detail(img)
        assert not np.array_equal(out, img)


def test_adaface_low_res_lowers_detail():
    img = _textured(1)
    low_res = AdaFaceAugmenter(crop_prob=0.0, low_res_prob=1.0, photometric_prob=0.0, low_res_range=(0.2, 0.5))
    np.random.seed(1)
    assert all(_detail(low_res(img)) < _detail(img) for _ in range(5))


def test_crop_keeps_canvas_size_with_black_border():
    img = np.full((112, 112, 3), 200, dtype=np.uint8)
    np.random.seed(2)
    for _ in range(10):
        out = crop_on_black_canvas(img, scale=(0.2, 0.5))
        assert out.shape == img.shape
        kept = out.any(axis=2)
        rows, cols = np.where(kept)
        box = kept[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.all()  # the kept part is one rectangle, in place and unscaled
        assert np.all(out[kept] == 200) and (~kept).sum() > 0
        assert 0.2 * 112 * 112 * 0.9 <= kept.sum() <= 0.5 * 112 * 112 * 1.1


def test_crop_box_respects_scale_and_ratio():
    np.random.seed(3)
    for _ in range(50):
        top, left, h, w = random_resized_crop_box(112, 112, (0.2, 1.0), (3 / 4, 4 / 3))
        assert top >= 0 and top + h <= 112 and left >= 0 and left + w <= 112
        assert 0.2 * 112 * 112 * 0.9 <= h * w <= 112 * 112


def test_adaface_probabilities_zero_is_identity_and_flip_mirrors():
    img = _textured(2)
    assert np.array_equal(AdaFaceAugmenter(0.0, 0.0, 0.0)(img), img)
    assert np.array_equal(RandomHorizontalFlip(p=1.0)(img), img[:, ::-1])
    assert np.array_equal(RandomHorizontalFlip(p=0.0)(img), img)


def test_color_jitter_changes_grey_levels_but_not_geometry():
    img = np.full((8, 8, 3), 100, dtype=np.uint8)
    np.random.seed(4)
    out = color_jitter(img, 0.5, 0.5, 0.5)
    assert out.shape == img.shape and len(np.unique(out)) == 1  # uniform stays uniform
    assert not np.array_equal(out, img)


def test_rejects_wrong_input():
    with pytest.raises(ValueError, match="uint8"):
        QGFaceDegradation()(np.zeros((112, 112, 3), dtype=np.float32))
