"""dataset.prepare on small fake raw layouts (the packed sets read back with the right rows, order and images), and
your own photos -> aligned identity folders (`python -m dataset.prepare folders`) with `data=folders` packing."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from alignment.align import ARCFACE_TEMPLATE, pick_face, scface_template_4pt
from dataset.convert import pack_folders_cached
from dataset.evalsets import PackedSet
from dataset.prepare.__main__ import main as prepare_main
from dataset.prepare.folders import prepare_folders, read_landmark_file
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


# --------------------------------------------------------------------------- your own photos (folders)

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
            _write(photos / ident / f"{k}.png", _face_like(pts, shape=(150, 130)))
            lines.append(f"{ident}/{k}.png " + " ".join(f"{v:.2f}" for v in pts.ravel()))
    # no line in the landmark file
    _write(photos / "alice" / "nolm.png", _face_like(ARCFACE_TEMPLATE, shape=(150, 130)))
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
