"""Your own photos -> aligned identity folders (`python -m dataset.prepare folders`) and `data=folders` packing."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from alignment.align import ARCFACE_TEMPLATE, pick_face
from dataset.convert import pack_folders_cached
from dataset.prepare.__main__ import main as prepare_main
from dataset.prepare.folders import prepare_folders, read_landmark_file


def _write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def _dots(points: np.ndarray, shape=(150, 130)) -> np.ndarray:
    img = np.full((*shape, 3), 20, np.uint8)
    for x, y in points:
        cv2.circle(img, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    return img


def _bright_at(img: np.ndarray, points: np.ndarray) -> bool:
    gray = img.mean(axis=2)
    return all(gray[int(round(y)), int(round(x))] > 128 for x, y in points)


def test_pick_face_largest_then_nearest_centre():
    boxes = np.array([[0, 0, 10, 10, 0.9], [0, 0, 30, 30, 0.9], [50, 50, 60, 60, 0.99]], float)
    assert pick_face(boxes, (100, 100)) == 1  # the largest
    tie = np.array([[0, 0, 20, 20, 0.99], [40, 40, 60, 60, 0.5], [75, 75, 95, 95, 0.9]], float)
    assert pick_face(tie, (100, 100)) == 1  # equal areas: the one nearest the centre, whatever the score


def test_landmark_file_aligns_without_detector_and_lists_skips(tmp_path):
    photos = tmp_path / "photos"
    lines = []
    for ident, n in (("alice", 3), ("bob", 1)):
        for k in range(n):
            pts = ARCFACE_TEMPLATE * 1.2 + np.array([5 + 3 * k, 8])
            _write(photos / ident / f"{k}.png", _dots(pts))
            lines.append(f"{ident}/{k}.png " + " ".join(f"{v:.2f}" for v in pts.ravel()))
    _write(photos / "alice" / "nolm.png", _dots(ARCFACE_TEMPLATE))  # no line in the landmark file
    (photos / "alice" / "notes.txt").write_text("not a face")
    (photos / "empty").mkdir()
    (photos / "bob" / "broken.jpg").write_bytes(b"not a jpeg")
    lm = tmp_path / "landmarks.txt"
    lm.write_text("# identity/image x1 y1 ... x5 y5\n" + "\n".join(lines) + "\n")
    summary = prepare_main(["folders", "--root", str(photos), "--out", str(tmp_path / "aligned"),
                            "--landmarks", str(lm)])
    out = tmp_path / "aligned"
    assert sorted(p.name for p in (out / "alice").iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]
    crop = cv2.imread(str(out / "alice" / "1.jpg"))
    assert crop.shape == (112, 112, 3) and _bright_at(crop, ARCFACE_TEMPLATE)
    reasons = dict(summary.skipped)
    assert reasons == {"alice/nolm.png": "no landmarks for this image in the landmark file",
                       "alice/notes.txt": "not an image file (.txt)", "empty/": "empty identity folder",
                       "bob/broken.jpg": "unreadable image"}
    skipped_csv = (out / "skipped.csv").read_text().splitlines()
    assert skipped_csv[0] == "path,reason" and len(skipped_csv) == 5
    assert any("bob: one image, kept (impostor pairs only" in note for note in summary.notes)
    assert not list(tmp_path.glob(".aligned*"))  # no staging folder left behind


def test_align_none_keeps_aligned_bytes_and_warns_duplicates(tmp_path, caplog):
    rng = np.random.default_rng(0)
    a = _write(tmp_path / "p" / "x" / "a.jpg", rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))
    _write(tmp_path / "p" / "x" / "b.png", rng.integers(0, 255, (90, 90, 3), dtype=np.uint8))
    (tmp_path / "p" / "y").mkdir()
    (tmp_path / "p" / "y" / "same.jpg").write_bytes(a.read_bytes())  # the same file under two identities
    with caplog.at_level("WARNING"):
        summary = prepare_folders(tmp_path / "p", tmp_path / "out", align="none")
    assert (tmp_path / "out" / "x" / "a.jpg").read_bytes() == a.read_bytes()
    assert cv2.imread(str(tmp_path / "out" / "x" / "b.jpg")).shape == (112, 112, 3)
    assert any("same image under 2 identities: x, y" in n for n in summary.notes)
    assert "same image under 2 identities" in caplog.text


def test_bad_landmark_file_names_line(tmp_path):
    bad = tmp_path / "lm.txt"
    bad.write_text("a/1.jpg 1 2 3\n")
    with pytest.raises(ValueError, match=r"lm.txt:1: expected"):
        read_landmark_file(bad)
    bad.write_text("a/1.jpg " + " ".join(["x"] * 10) + "\n")
    with pytest.raises(ValueError, match=r"lm.txt:1: non-numeric"):
        read_landmark_file(bad)


def test_root_without_identity_folders_is_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(ValueError, match="no identity folders"):
        prepare_folders(tmp_path / "photos", tmp_path / "out", align="none")
    assert not (tmp_path / "out").exists()


def test_mtcnn_on_real_photos(shared_data, weights, tmp_path):
    """Every real photo of the shared data (one or several faces) gives one aligned crop: the detection rate."""
    photos = tmp_path / "photos"
    files = sorted((shared_data / "faces").iterdir())
    for k, src in enumerate(files):
        (photos / f"id{k % 3}").mkdir(parents=True, exist_ok=True)
        (photos / f"id{k % 3}" / src.name).write_bytes(src.read_bytes())
    summary = prepare_folders(photos, tmp_path / "aligned", mtcnn_weights=weights, workers=2)
    detected = summary.packed["mtcnn"]
    print(f"MTCNN detection rate on {len(files)} real photos: {detected}/{len(files)}")
    assert detected == len(files) and not summary.skipped
    assert cv2.imread(str(next((tmp_path / "aligned" / "id0").iterdir()))).shape == (112, 112, 3)


def test_data_folders_packs_once_keyed_by_content(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "aligned"
    for ident in ("a", "b"):
        for k in range(2):
            _write(root / ident / f"{k}.jpg", rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))
    rec = pack_folders_cached(root, tmp_path / "cache", progress=False)
    assert rec.is_file() and rec.with_suffix(".idx").is_file()
    mtime = rec.stat().st_mtime_ns
    assert pack_folders_cached(root, tmp_path / "cache", progress=False) == rec and rec.stat().st_mtime_ns == mtime
    _write(root / "c" / "0.jpg", rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))
    rec2 = pack_folders_cached(root, tmp_path / "cache", progress=False)
    assert rec2 != rec  # new content, new pack

    from dataset.readers import TrainRecordDataset

    assert TrainRecordDataset(str(rec2)).num_classes == 3
