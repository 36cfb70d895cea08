import cv2
import numpy as np
import pytest

from alignment.align import ARCFACE_TEMPLATE, align_face, estimate_similarity, scface_template_4pt


def _similarity(scale, angle_deg, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def _apply(matrix, pts):
    return pts @ matrix[:, :2].T + matrix[:, 2]


def test_recovers_exact_similarity():
    truth = _similarity(1.7, 23.0, 40.0, -12.0)
    src = _apply(np.linalg.inv(np.vstack([truth, [0, 0, 1]]))[:2], ARCFACE_TEMPLATE.astype(np.float64))
    np.testing.assert_allclose(estimate_similarity(src, ARCFACE_TEMPLATE), truth, atol=1e-9)


def test_matches_linear_least_squares_on_noisy_points():
    rng = np.random.default_rng(0)
    src = ARCFACE_TEMPLATE * 2.3 + rng.normal(0, 3, (5, 2)) + 100
    # Independent solution: the 4-parameter similarity [a -b tx; b a ty] is linear in its parameters.
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, ARCFACE_TEMPLATE):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    expected = np.array([[a, -b, tx], [b, a, ty]])
    np.testing.assert_allclose(estimate_similarity(src, ARCFACE_TEMPLATE), expected, atol=1e-8)


def test_never_reflects():
    mirrored = ARCFACE_TEMPLATE * np.array([-1.0, 1.0]) + np.array([112.0, 0.0])
    matrix = estimate_similarity(mirrored, ARCFACE_TEMPLATE)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_align_moves_landmarks_onto_template():
    truth = _similarity(2.0, -15.0, 60.0, 80.0)
    src_pts = _apply(truth, ARCFACE_TEMPLATE.astype(np.float64))
    img = np.zeros((400, 400, 3), np.uint8)
    for x, y in src_pts:
        cv2.circle(img, (int(round(x)), int(round(y))), 5, (255, 255, 255), -1)
    crop = align_face(img, src_pts)
    assert crop.shape == (112, 112, 3)
    for x, y in ARCFACE_TEMPLATE:
        assert crop[int(round(y)), int(round(x))].min() > 200


def test_four_point_template_and_passthrough():
    four = scface_template_4pt()
    assert four.shape == (4, 2)
    np.testing.assert_allclose(four[3], ARCFACE_TEMPLATE[3:5].mean(0))
    crop = align_face(np.full((112, 112, 3), 7, np.uint8), None)
    assert crop.shape == (112, 112, 3) and crop.max() == 7
    with pytest.raises(ValueError, match="landmarks"):
        align_face(np.zeros((50, 50, 3), np.uint8), np.zeros((3, 2)) + [[1, 2], [3, 4], [5, 9]])
