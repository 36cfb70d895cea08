"""dataset.convert: make_rec (order, colours, atomicity), InsightFace packs, unpacking, safe .bin loading, CLI."""

import os
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest

from dataset import convert, recordio
from dataset.convert import make_rec, write_insightface_rec
from dataset.formats import UnsafeBinError, load_bin, open_rec, write_bin


@pytest.fixture
def write_images(solid):
    """`write_images(folder, n)`: n small JPEG files of different sizes (so parallel encoders finish out of order);
    returns their paths."""

    def _write_images(folder, n):
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(n):
            size = 8 + 24 * ((i * 7) % 5)
            img = solid((200, 30, 10 + 10 * i), size)  # mostly blue in BGR; red channel encodes i
            path = folder / f"img_{i:03d}.jpg"
            cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 100])
            paths.append(path)
        return paths

    return _write_images


def read_all(rec_path):
    with open_rec(rec_path) as r:
        return [(k, *recordio.unpack(r.read_idx(k))) for k in r.keys]


def test_make_rec_keeps_order_with_parallel_encoding_and_stores_file_bytes(tmp_path, write_images):
    paths = write_images(tmp_path / "imgs", 20)
    rec, idx = make_rec(paths, tmp_path / "out", dataset_name="probe", num_workers=4, progress=False)
    assert rec == tmp_path / "out" / "probe.rec" and idx.exists()
    records = read_all(rec)
    assert [k for k, _, _ in records] == list(range(20))
    for i, (_, header, payload) in enumerate(records):
        assert header.label == float(i) and header.id == i
        assert payload == paths[i].read_bytes()  # is_origin=True: verbatim


def test_make_rec_reencode_has_correct_colours_and_lab_func(tmp_path, write_images):
    paths = write_images(tmp_path / "imgs", 12)
    rec, _ = make_rec([p.name for p in paths], tmp_path / "imgs", lab_func=lambda p: int(p[4:7]) % 3,
                      dataset_name="re", is_origin=False, num_workers=3, progress=False)
    for i, (_, header, payload) in enumerate(read_all(rec)):
        img = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
        assert header.label == float(i % 3)
        assert img.shape[:2] == cv2.imread(str(paths[i])).shape[:2]
        b, g, r = img.reshape(-1, 3).mean(0)
        assert b > 180 and abs(r - (10 + 10 * i)) < 8  # blue stays blue: no R/B swap


def test_failed_make_rec_rerun_keeps_the_previous_pair(tmp_path, write_images):
    """A rerun that fails part-way leaves the previous valid pair byte for byte, and no temporaries."""
    paths = write_images(tmp_path / "imgs", 10)
    out = tmp_path / "out"
    make_rec(paths[:4], out, dataset_name="ds", num_workers=1, progress=False)
    before = {name: (out / name).read_bytes() for name in ("ds.rec", "ds.idx")}

    def lab_func(path):
        if str(path).endswith("img_006.jpg"):
            raise RuntimeError("simulated crash")
        return 0

    with pytest.raises(RuntimeError, match="simulated crash"):
        make_rec(paths, out, lab_func=lab_func, dataset_name="ds", num_workers=2, progress=False)
    assert sorted(os.listdir(out)) == ["ds.idx", "ds.rec"]
    assert {name: (out / name).read_bytes() for name in before} == before


def test_interrupted_first_make_rec_leaves_no_pair(tmp_path, write_images):
    paths = write_images(tmp_path / "imgs", 10)

    def lab_func(path):
        if str(path).endswith("img_006.jpg"):
            raise RuntimeError("simulated crash")
        return 0

    with pytest.raises(RuntimeError, match="simulated crash"):
        make_rec(paths, tmp_path / "out", lab_func=lab_func, dataset_name="ds", num_workers=2, progress=False)
    assert sorted(os.listdir(tmp_path / "out")) == []  # no half-written pair, no temporaries


def test_make_rec_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="bad.jpg"):
        make_rec([bad], tmp_path / "out", is_origin=False, progress=False)
    assert not (tmp_path / "out" / "dataset.idx").exists()


def test_pack_identity_folders_layout_and_unpack_round_trip(tmp_path, write_images):
    root = tmp_path / "faces"
    counts = {"alice": 2, "bob": 3, "carol": 1}
    for name, n in counts.items():
        write_images(root / name, n)
    (root / "empty").mkdir()
    stats = convert.pack_identity_folders(root, tmp_path / "pack", num_workers=2, progress=False)
    assert stats["num_images"] == 6 and stats["num_classes"] == 3

    records = read_all(tmp_path / "pack" / "train.rec")
    keys = [k for k, _, _ in records]
    assert keys == list(range(10))  # header0 written first, then images, then identities
    h0 = records[0][1]
    assert h0.flag == 2 and h0.label.tolist() == [7.0, 10.0] and records[0][2] == b""
    assert [int(h.label) for _, h, _ in records[1:7]] == [0, 0, 1, 1, 1, 2]
    assert [h.label.tolist() for _, h, _ in records[7:]] == [[1, 3], [3, 6], [6, 7]]
    assert records[1][2] == (root / "alice" / "img_000.jpg").read_bytes()
    assert (tmp_path / "pack" / "train_identities.txt").read_text() == "0\talice\n1\tbob\n2\tcarol\n"

    n = convert.unpack_rec(tmp_path / "pack" / "train.rec", tmp_path / "unpacked", progress=False)
    assert n == 6
    assert sorted(os.listdir(tmp_path / "unpacked")) == ["0", "1", "2"]
    assert (tmp_path / "unpacked" / "1" / "5.jpg").read_bytes() == (root / "bob" / "img_002.jpg").read_bytes()


def test_write_insightface_rec_from_arrays_requires_grouping(tmp_path, solid):
    items = [(solid((i, 0, 0)), lab) for i, lab in enumerate([4, 4, 2, 9])]
    stats = write_insightface_rec(tmp_path / "t", items, num_workers=2)
    assert stats == {"num_images": 4, "num_classes": 3, "labels": [4, 2, 9]}
    with pytest.raises(ValueError, match="grouped by label"):
        write_insightface_rec(tmp_path / "u", [(b"x", 1), (b"y", 2), (b"z", 1)], num_workers=1)
    assert not (tmp_path / "u" / "train.idx").exists() and not (tmp_path / "u" / "train.rec").exists()


def test_unpack_swap_rb_fixes_qgface_swapped_files(tmp_path, solid):
    swapped = cv2.imencode(".png", solid((10, 20, 250)))[1].tobytes()  # a red face stored as blue
    (tmp_path / "x.png").write_bytes(swapped)
    make_rec([tmp_path / "x.png"], tmp_path, dataset_name="q", progress=False)
    convert.unpack_rec(tmp_path / "q.rec", tmp_path / "out", swap_rb=True, progress=False)
    img = cv2.imread(str(tmp_path / "out" / "0" / "0.jpg"))
    assert img[..., 0].mean() > 200 and img[..., 2].mean() < 30


# ---------------------------------------------------------------- .bin files


def test_bin_round_trip(tmp_path, solid):
    imgs = [solid((i * 20, 0, 0)) for i in range(4)]
    path = write_bin(tmp_path / "lfw.bin", imgs, [True, False])
    bins, issame = load_bin(path)
    assert issame == [True, False] and len(bins) == 4 and all(isinstance(b, bytes) for b in bins)
    assert cv2.imdecode(np.frombuffer(bins[2], np.uint8), cv2.IMREAD_COLOR)[..., 0].mean() == pytest.approx(40, abs=3)
    with pytest.raises(ValueError, match="2 per pair"):
        write_bin(tmp_path / "x.bin", imgs, [True])
    assert not (tmp_path / "x.bin").exists()


def test_bin_python2_and_protocol2_pickles(tmp_path):
    # Python 2 pickle: PROTO 2, a list of two str (= bytes) images, a list with one True, as a 2-tuple.
    py2 = b"\x80\x02](U\x02abU\x02cde]\x88a\x86."
    (tmp_path / "py2.bin").write_bytes(py2)
    assert load_bin(tmp_path / "py2.bin") == ([b"ab", b"cd"], [True])
    # Python 3 protocol 2: bytes go through _codecs.encode, numpy bools through numpy's scalar reconstructor.
    (tmp_path / "p2.bin").write_bytes(pickle.dumps(([b"\xff\xd8", b"\x00"], [np.bool_(False)]), protocol=2))
    assert load_bin(tmp_path / "p2.bin") == ([b"\xff\xd8", b"\x00"], [False])


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))  # loading would create the file


def test_malicious_bin_is_refused_without_running_anything(tmp_path):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.bin"
    path.write_bytes(pickle.dumps(([b"a", _Evil(str(target))], [True])))
    with pytest.raises(UnsafeBinError, match=r"evil\.bin.*references io\.open"):
        load_bin(path)
    assert not target.exists()

    path.write_bytes(pickle.dumps(([b"a", b"b"], [np.array([1], dtype=object)])))
    with pytest.raises(UnsafeBinError, match="refused"):
        load_bin(path)
    path.write_bytes(pickle.dumps(([b"a", b"b"], [np.float64(1.0)]), protocol=2))
    with pytest.raises(UnsafeBinError, match="dtype"):
        load_bin(path)
    path.write_bytes(pickle.dumps({"not": "a pair"}))
    with pytest.raises(ValueError, match="pair"):
        load_bin(path)
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match=r"evil\.bin"):
        load_bin(path)


# ---------------------------------------------------------------- command line


def test_cli_help_and_commands(tmp_path, capsys, solid, write_images):
    out = subprocess.run([sys.executable, "-m", "dataset.convert", "--help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("make-rec", "pack-folders", "unpack", "rec-info", "bin-info", "bin-unpack"):
        assert command in out

    paths = write_images(tmp_path / "faces" / "id0", 2) + write_images(tmp_path / "faces" / "id1", 1)
    (tmp_path / "list.txt").write_text("\n".join(str(p) for p in paths) + "\n")
    assert convert.main(["make-rec", str(tmp_path / "list.txt"), "--data-root", str(tmp_path / "o"),
                         "--label", "parent", "--workers", "2"]) == 0
    assert [int(h.label) for _, h, _ in read_all(tmp_path / "o" / "dataset.rec")] == [0, 0, 1]
    assert convert.main(["pack-folders", str(tmp_path / "faces"), str(tmp_path / "p")]) == 0
    assert convert.main(["rec-info", str(tmp_path / "p" / "train.rec")]) == 0
    assert "3 images" in capsys.readouterr().out
    write_bin(tmp_path / "v.bin", [solid((0, 0, 0))] * 4, [True, False])
    assert convert.main(["bin-info", str(tmp_path / "v.bin")]) == 0
    assert "2 pairs (1 same, 1 different)" in capsys.readouterr().out
    assert convert.main(["bin-unpack", str(tmp_path / "v.bin"), str(tmp_path / "vb")]) == 0
    assert (tmp_path / "vb" / "pairs.txt").read_text().splitlines() == ["000000 000001 1", "000002 000003 0"]
