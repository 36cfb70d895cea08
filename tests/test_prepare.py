"""dataset.prepare on small fake raw layouts: the packed sets read back with the right rows, order and images."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from alignment.align import ARCFACE_TEMPLATE, scface_template_4pt
from dataset.evalsets import PackedSet
from dataset.prepare.__main__ import main as prepare_main
from dataset.prepare.ijb import prepare_ijb
from dataset.prepare.scface import parse_scface_layout
from dataset.prepare.tinyface import prepare_tinyface


def _write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def _face_like(points: np.ndarray, shape=(160, 140)) -> np.ndarray:
    """Dark image with a bright dot at each landmark, so alignment can be checked on the packed crop."""
    img = np.full((*shape, 3), 20, np.uint8)
    for x, y in points:
        cv2.circle(img, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    return img


def _points_in_raw(template: np.ndarray, angle: float, scale: float, shift) -> np.ndarray:
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    return template @ np.array([[c, s], [-s, c]]) + np.asarray(shift)


def _bright_at(img: np.ndarray, points: np.ndarray) -> bool:
    gray = img.mean(axis=2)
    return all(gray[int(round(y)), int(round(x))] > 128 for x, y in points)


# --------------------------------------------------------------------------- TinyFace

def test_tinyface_aligned_release(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "raw" / "aligned_pad_0.1_pad_high"
    files = {"Probe": ["7_1.jpg", "3_2.jpg"], "Gallery_Match": ["3_1.jpg", "7_2.jpg", "7_3.jpg"],
             "Gallery_Distractor": ["1.jpg", "2.jpg"]}
    for split, names in files.items():
        for name in names:
            _write(root / split / name, rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))
    summary = prepare_tinyface(tmp_path / "raw", tmp_path / "val")
    packed = PackedSet(tmp_path / "val" / "tinyface")
    assert len(packed) == 7 and not summary.skipped
    assert list(packed.meta["split"]) == ["probe"] * 2 + ["gallery_match"] * 3 + ["gallery_distractor"] * 2
    assert list(packed.meta["name"][:2]) == ["Probe/3_2.jpg", "Probe/7_1.jpg"]  # sorted within a split
    assert list(packed.meta["label"]) == [3, 7, 3, 7, 7, -1, -1]
    # The release's JPEG bytes are stored as they are: the decoded crop equals the decoded source file.
    np.testing.assert_array_equal(packed.read_image(0), cv2.imread(str(root / "Probe" / "3_2.jpg")))


def test_tinyface_raw_with_mtcnn(shared_data, tmp_path):
    weights = shared_data / "mtcnn" / "mtcnn_weights.npz"
    root = tmp_path / "tinyface" / "Testing_Set"
    for split, name, src in [("Probe", "1_1.jpg", "face0.jpg"), ("Gallery_Match", "1_2.jpg", "img1.jpeg"),
                             ("Gallery_Distractor", "9.jpg", None)]:
        img = cv2.imread(str(shared_data / "faces" / src)) if src else np.full((24, 20, 3), 90, np.uint8)
        _write(root / split / name, img)
    summary = prepare_tinyface(tmp_path, tmp_path / "val", source="raw", mtcnn_weights=weights)
    packed = PackedSet(tmp_path / "val" / "tinyface")
    assert len(packed) == 3 and packed.read_image(0).shape == (112, 112, 3)
    assert summary.notes["mtcnn"] == 2 and summary.notes["no face: whole image resized"] == 1


def test_tinyface_missing_folders_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Probe"):
        prepare_tinyface(tmp_path, tmp_path / "val")


# --------------------------------------------------------------------------- SCface

def test_scface_all_txt(tmp_path):
    root = tmp_path / "scface"
    template = scface_template_4pt()
    lines = []
    ids = ["001_frontal", "001_cam1_1", "001_cam3_3", "001_cam7_2", "002_frontal", "002_cam5_2", "002_cam2_1"]
    for k, image_id in enumerate(ids):
        pts = _points_in_raw(template, angle=0.1 * (k - 3), scale=1.1, shift=(15 + k, 20))
        if image_id != "002_cam2_1":  # one row whose image is missing
            _write(root / "images" / f"{image_id}.jpg", _face_like(pts))
        # layout with the mouth first and one ignored column: exercise --layout
        cols = [pts[3, 0], pts[3, 1], 0.0, pts[0, 0], pts[0, 1], pts[1, 0], pts[1, 1], pts[2, 0], pts[2, 1]]
        lines.append("\t".join([image_id] + [f"{v:.2f}" for v in cols]))
    (root / "all.txt").write_text("\n".join(lines) + "\n")
    summary = prepare_main(["scface", "--root", str(root), "--out", str(tmp_path / "val"),
                            "--layout", "mx,my,_,lex,ley,rex,rey,nx,ny"])
    packed = PackedSet(tmp_path / "val" / "scface")
    assert list(packed.meta["name"]) == ["001_frontal", "001_cam1_1", "001_cam3_3", "002_frontal", "002_cam5_2"]
    assert list(packed.meta["camera"]) == ["frontal", "cam1", "cam3", "frontal", "cam5"]
    assert list(packed.meta["distance"]) == [0, 1, 3, 0, 2]
    assert list(packed.meta["split"]) == ["gallery", "probe", "probe", "gallery", "probe"]
    assert list(packed.meta["label"]) == [1, 1, 1, 2, 2]
    assert summary.skipped == [("002_cam2_1", "image missing or unreadable")]
    assert summary.notes["infrared camera dropped"] == 1
    for i in range(len(packed)):  # the 4-point template puts the dots where the template says
        assert _bright_at(packed.read_image(i), template), packed.meta["name"][i]
    assert (tmp_path / "val" / "scface" / "meta" / "all.txt").read_text() == (root / "all.txt").read_text()


def test_scface_layout_validation():
    assert parse_scface_layout("lex,ley,rex,rey,nx,ny,mlx,mly,mrx,mry")[-1] == "mry"
    with pytest.raises(ValueError, match="unknown columns"):
        parse_scface_layout("lex,ley,rex,rey,nose")
    with pytest.raises(ValueError, match="mouth"):
        parse_scface_layout("lex,ley,rex,rey,nx,ny")


# --------------------------------------------------------------------------- IJB

def test_ijbb_order_landmarks_and_protocol_files(tmp_path):
    root = tmp_path / "IJBB"
    meta = root / "meta"
    meta.mkdir(parents=True)
    tid_mid = [("3.jpg", 10, 100), ("1.jpg", 10, 101), ("2.jpg", 11, 102), ("4.jpg", 12, 103)]
    pts_lines = []
    for k, name in enumerate(["1.jpg", "2.jpg", "3.jpg", "4.jpg"]):  # a different order from tid_mid
        pts = _points_in_raw(ARCFACE_TEMPLATE, angle=-0.15 + 0.1 * k, scale=1.3, shift=(10, 5 + 3 * k))
        if name != "4.jpg":  # 4.jpg is listed but its image is missing
            _write(root / "loose_crop" / name, _face_like(pts, shape=(180, 170)))
        pts_lines.append(" ".join([name] + [f"{v:.3f}" for v in pts.reshape(-1)] + [f"{0.9 + 0.01 * k:.2f}"]))
    (meta / "ijbb_name_5pts_score.txt").write_text("\n".join(pts_lines) + "\n")
    (meta / "ijbb_face_tid_mid.txt").write_text("".join(f"{n} {t} {m}\n" for n, t, m in tid_mid))
    (meta / "ijbb_template_pair_label.txt").write_text("10 11 0\n10 12 1\n")
    (meta / "ijbb_1N_gallery_S1.csv").write_text("TEMPLATE_ID,SUBJECT_ID,FILENAME\n10,5,x.jpg\n12,6,y.jpg\n")
    summary = prepare_ijb(root, tmp_path / "val")
    out = tmp_path / "val" / "ijbb"
    packed = PackedSet(out)
    assert list(packed.meta["name"]) == ["3.jpg", "1.jpg", "2.jpg", "4.jpg"]
    assert list(packed.meta["template"]) == [10, 10, 11, 12]
    assert list(packed.meta["media"]) == [100, 101, 102, 103]
    assert list(packed.meta["label"]) == [5, 5, -1, 6]  # subject ids from the 1:N csv, -1 where unknown
    np.testing.assert_allclose(packed.meta["faceness"], [0.92, 0.90, 0.91, 0.0])
    for i in range(3):
        assert _bright_at(packed.read_image(i), ARCFACE_TEMPLATE), i
    assert packed.read_image(3).max() == 0  # placeholder keeps row 3 = line 3
    assert len(summary.skipped) == 1 and summary.skipped[0][0] == "4.jpg"
    for name in ["ijbb_face_tid_mid.txt", "ijbb_template_pair_label.txt", "ijbb_1N_gallery_S1.csv"]:
        assert (out / "meta" / name).read_bytes() == (meta / name).read_bytes()


def test_ijb_parallel_workers_keep_order(tmp_path):
    root = tmp_path / "IJBC"
    (root / "meta").mkdir(parents=True)
    names = [f"{k}.jpg" for k in range(6)]
    for k, name in enumerate(names):
        img = np.full((120, 120, 3), 40 * k, np.uint8)
        _write(root / "loose_crop" / name, img)
    pts = _points_in_raw(ARCFACE_TEMPLATE, 0.0, 1.0, (4, 4)).reshape(-1)
    (root / "meta" / "ijbc_name_5pts_score.txt").write_text(
        "".join(" ".join([n] + [f"{v:.2f}" for v in pts] + ["1.0"]) + "\n" for n in names))
    (root / "meta" / "ijbc_face_tid_mid.txt").write_text("".join(f"{n} {k} {k}\n" for k, n in enumerate(names)))
    (root / "meta" / "ijbc_template_pair_label.txt").write_text("0 1 0\n")
    prepare_ijb(root, tmp_path / "val", workers=2)
    packed = PackedSet(tmp_path / "val" / "ijbc")
    means = [packed.read_image(i)[40:70, 40:70].mean() for i in range(6)]
    np.testing.assert_allclose(means, [40 * k for k in range(6)], atol=3)
