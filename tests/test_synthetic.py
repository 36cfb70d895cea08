"""The synthetic benchmark: every set loads with the project's readers and matches its protocol files; same seed ->
same bytes (whatever the worker count); disjoint train/eval identities; cache reuse keyed by the generator version
and the versions of the libraries that shape the bytes; leftovers of a killed build are cleaned up."""

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from dataset import recordio
from dataset.evalsets import PackedSet
from dataset.formats import load_bin
from dataset.readers import TrainRecordDataset
from dataset.synthetic import builder as synthetic
from dataset.synthetic import cache
from dataset.synthetic.jobs import render_job

NO_SUCH_PID = 2**22 + 1  # above Linux's PID_MAX_LIMIT: never a running process

PRE = synthetic.PRESETS["smoke"]
MICRO = synthetic.Preset(train_ids=3, train_images=2, bin_pairs=20, tinyface_ids=2, tinyface_probes=1,
                         tinyface_matches=1, tinyface_distractors=2, scface_subjects=1, ijb_subjects=3,
                         ijb_templates=2, ijb_max_impostors=5)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    return synthetic.build(tmp_path_factory.mktemp("synthetic"), "smoke", seed=0, workers=2)


@pytest.fixture
def micro(monkeypatch):
    monkeypatch.setitem(synthetic.PRESETS, "micro", MICRO)
    return "micro"


def _hashes(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = str(path.relative_to(root))
        data = path.read_bytes()
        if rel == "DONE":  # holds the build time
            facts = json.loads(data)
            facts.pop("build_seconds")
            data = json.dumps(facts, sort_keys=True).encode()
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


def test_cache_folder_and_done_marker(smoke):
    assert smoke.name == f"smoke-v{cache.GENERATOR_VERSION}-s0-cv{cv2.__version__}-np{np.__version__}"
    facts = json.loads((smoke / "DONE").read_text())
    assert facts["generator_version"] == cache.GENERATOR_VERSION and facts["preset"] == "smoke"
    assert facts["libraries"] == {"opencv": cv2.__version__, "numpy": np.__version__}
    assert not list(smoke.parent.glob(".*tmp*")), "temporary build folder left behind"


def test_train_rec_header0_and_reader(smoke):
    info = json.loads((smoke / "train" / "dataset.json").read_text())
    assert info == dict(info, num_classes=PRE.train_ids, num_images=PRE.train_ids * PRE.train_images)
    with recordio.MXIndexedRecordIO(str(smoke / "train/train.idx"), str(smoke / "train/train.rec"), "r") as rec:
        header, payload = recordio.unpack(rec.read_idx(0))
        assert header.flag > 0 and payload == b""
        n_img = info["num_images"]
        assert list(header.label) == [n_img + 1, n_img + 1 + info["num_classes"]]
        ident_header, _ = recordio.unpack(rec.read_idx(n_img + 1))  # identity 0: keys [1, 1 + images per id)
        assert list(ident_header.label) == [1, 1 + PRE.train_images]
    ds = TrainRecordDataset(smoke / "train" / "train.rec")
    assert len(ds) == info["num_images"] and ds.num_classes == info["num_classes"]
    assert np.array_equal(ds.labels, np.repeat(np.arange(PRE.train_ids), PRE.train_images))
    img, label = ds[len(ds) - 1]
    assert tuple(img.shape) == (3, 112, 112) and label == PRE.train_ids - 1


@pytest.mark.parametrize("name", synthetic.BIN_SETS)
def test_bins_have_balanced_contiguous_folds(smoke, name):
    bins, issame = load_bin(smoke / "val" / f"{name}.bin")
    assert len(issame) == PRE.bin_pairs and len(bins) == 2 * PRE.bin_pairs
    folds = np.array(issame).reshape(10, -1)
    assert (folds.sum(axis=1) == folds.shape[1] // 2).all(), "every fold half same, half different"
    img = cv2.imdecode(np.frombuffer(bins[0], np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (112, 112, 3)
    # Pair identities follow the labels; different pairs never share an identity.
    for (a, b, same), flag in zip(synthetic.bin_pairs(name, PRE, 0), issame, strict=True):
        assert (a == b) == same == flag


def test_tinyface_packed_matches_raw_layout(smoke):
    packed = PackedSet(smoke / "val" / "tinyface")
    meta = packed.meta
    split = meta["split"]
    counts = Counter(split.tolist())
    assert counts == {"probe": PRE.tinyface_ids * PRE.tinyface_probes,
                      "gallery_match": PRE.tinyface_ids * PRE.tinyface_matches,
                      "gallery_distractor": PRE.tinyface_distractors}
    assert (meta["label"][split == "gallery_distractor"] == -1).all()
    assert set(meta["label"][split == "probe"]) == set(meta["label"][split == "gallery_match"])
    raw = smoke / "raw" / "tinyface" / "Testing_Set"
    for name, label, s in zip(meta["name"], meta["label"], split, strict=True):
        path = raw / name
        assert path.is_file() and path.parent.name == synthetic.TINYFACE_SPLIT_DIRS[s]
        if s != "gallery_distractor":
            assert int(path.name.split("_")[0]) == label
    probe = cv2.imread(str(raw / meta["name"][0]))
    assert max(probe.shape[:2]) < 40, "TinyFace probes are tiny captures"
    assert packed.read_image(0).shape == (112, 112, 3)


def test_scface_protocol_and_prepare_roundtrip(smoke, tmp_path):
    packed = PackedSet(smoke / "val" / "scface")
    meta = packed.meta
    gallery = meta["split"] == "gallery"
    assert sorted(meta["label"][gallery]) == list(range(1, PRE.scface_subjects + 1))
    assert (meta["camera"][gallery] == "frontal").all()
    for d in (1, 2, 3):
        probes = (meta["split"] == "probe") & (meta["distance"] == d)
        assert probes.sum() == PRE.scface_subjects * synthetic.SCFACE_CAMERAS
    lines = (smoke / "raw" / "scface" / "all.txt").read_text().splitlines()
    ids = [line.split("\t")[0] for line in lines]
    assert ids == meta["name"].tolist() and all(len(line.split("\t")) == 9 for line in lines)
    assert all(re.fullmatch(r"\d{3}_(frontal|cam[1-5]_[123])", i) for i in ids)
    # The raw layout re-prepared by the real pipeline gives the same packed set, byte for byte.
    from dataset.prepare.scface import prepare_scface

    prepare_scface(smoke / "raw" / "scface", tmp_path)
    assert (tmp_path / "scface" / "images.rec").read_bytes() == (smoke / "val/scface/images.rec").read_bytes()
    d1 = cv2.imread(str(smoke / "raw/scface/images/001_cam1_1.jpg"))
    d3 = cv2.imread(str(smoke / "raw/scface/images/001_cam1_3.jpg"))
    assert d1.shape[0] < d3.shape[0] < 144, "d1 (farthest) is the smallest capture"


def _read_rows(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def test_ijbb_protocol_files_and_prepare_roundtrip(smoke, tmp_path):
    meta_dir = smoke / "raw" / "IJBB" / "meta"
    tid_mid = _read_rows(meta_dir / "ijbb_face_tid_mid.txt")
    pts = _read_rows(meta_dir / "ijbb_name_5pts_score.txt")
    pairs = np.array(_read_rows(meta_dir / "ijbb_template_pair_label.txt"), dtype=np.int64)
    packed = PackedSet(smoke / "val" / "ijbb")
    meta = packed.meta
    assert [r[0] for r in tid_mid] == meta["name"].tolist() == [r[0] for r in pts]
    assert [int(r[1]) for r in tid_mid] == meta["template"].tolist()
    assert [int(r[2]) for r in tid_mid] == meta["media"].tolist()
    assert all(len(r) == 12 for r in pts)
    for name in meta["name"][:3]:
        assert (smoke / "raw" / "IJBB" / "loose_crop" / name).is_file()
    subject = {int(t): int(s) for t, s in zip(meta["template"], meta["label"], strict=True)}
    assert len(subject) == PRE.ijb_subjects * PRE.ijb_templates
    assert set(pairs[:, :2].ravel()) <= set(subject)
    expected = np.array([subject[a] == subject[b] for a, b in pairs[:, :2]], dtype=np.int64)
    assert np.array_equal(pairs[:, 2], expected)
    n_genuine = PRE.ijb_subjects * PRE.ijb_templates * (PRE.ijb_templates - 1) // 2
    assert pairs[:, 2].sum() == n_genuine and (pairs[:, 2] == 0).sum() == PRE.ijb_max_impostors
    media_per_template = defaultdict(set)
    for t, m in zip(meta["template"], meta["media"], strict=True):
        media_per_template[t].add(m)
    assert max(len(m) for m in media_per_template.values()) > 1, "templates mix several media"
    for rel in ("meta/ijbb_face_tid_mid.txt", "meta/ijbb_template_pair_label.txt"):
        assert (smoke / "val" / "ijbb" / rel).read_bytes() == (smoke / "raw" / "IJBB" / rel).read_bytes()
    from dataset.prepare.ijb import prepare_ijb

    prepare_ijb(smoke / "raw" / "IJBB", tmp_path)
    assert (tmp_path / "ijbb" / "images.rec").read_bytes() == (smoke / "val/ijbb/images.rec").read_bytes()
    with open(tmp_path / "ijbb" / "meta.csv") as a, open(smoke / "val/ijbb/meta.csv") as b:
        assert list(csv.reader(a)) == list(csv.reader(b))


def test_loose_crop_landmarks_align_to_template(smoke):
    """The 5 points in ijbb_name_5pts_score.txt really are the face's: aligning the HQ crop recovers the face."""
    from alignment.align import ARCFACE_TEMPLATE, estimate_similarity

    row = _read_rows(smoke / "raw/IJBB/meta/ijbb_name_5pts_score.txt")[0]
    lm = np.array(row[1:11], dtype=np.float64).reshape(5, 2)
    m = estimate_similarity(lm, ARCFACE_TEMPLATE)
    mapped = lm @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - ARCFACE_TEMPLATE).max() < 12  # a similarity fits the drawn points (pose bends them)
    crop = cv2.imread(str(smoke / "raw/IJBB/loose_crop" / row[0]))
    assert crop is not None and (lm >= -1).all() and (lm[:, 0] <= crop.shape[1]).all()


@pytest.mark.parametrize("preset", sorted(synthetic.PRESETS))  # from the plans alone: fast for every preset
def test_train_and_eval_identities_disjoint(preset):
    used = synthetic.identities_used(preset, seed=0)
    fs = synthetic.PRESETS[preset].family_size
    train_families = {i // fs for i in used.pop("train")}
    for name, ids in used.items():
        assert not train_families & {i // fs for i in ids}, f"{name} shares a family with training"


def test_demo_ijb_has_enough_impostors():
    pre = synthetic.PRESETS["demo"]
    pairs = synthetic.ijb_pairs(synthetic.ijb_plan(pre, 0), pre, 0)
    assert sum(1 for *_, lab in pairs if lab == 0) >= 100_000


def test_same_seed_same_bytes_any_worker_count(tmp_path, micro):
    a = synthetic.build(tmp_path / "a", micro, seed=3, workers=1)
    b = synthetic.build(tmp_path / "b", micro, seed=3, workers=2)
    assert _hashes(a) == _hashes(b)
    job = synthetic.plan_train(MICRO, 3)[0]
    assert render_job(3, 3, 1.0, job)["raw"] != render_job(4, 3, 1.0, job)["raw"]


def test_cache_reused_and_keyed_by_version(tmp_path, micro, monkeypatch):
    first = synthetic.build(tmp_path, micro, seed=0, workers=1)
    stamp = (first / "DONE").stat().st_mtime_ns
    (first / "train" / "marker").write_text("kept")
    assert synthetic.build(tmp_path, micro, seed=0, workers=1) == first
    assert (first / "DONE").stat().st_mtime_ns == stamp and (first / "train" / "marker").is_file()
    monkeypatch.setattr(cache, "GENERATOR_VERSION", cache.GENERATOR_VERSION + 1)
    assert cache.cache_name(micro, 0) != first.name
    assert f"-v{cache.GENERATOR_VERSION}-" in cache.cache_name(micro, 0)


def test_other_library_versions_build_their_own_folder(tmp_path, micro, monkeypatch):
    first = synthetic.build(tmp_path, micro, seed=0, workers=1)
    bytes_before = _hashes(first)
    other = {"opencv": "0.0.1", "numpy": np.__version__}  # another OpenCV release
    monkeypatch.setattr(cache, "library_versions", lambda: other)
    again = synthetic.build(tmp_path, micro, seed=0, workers=1)
    assert again != first and again.name.endswith(f"-cv0.0.1-np{np.__version__}"), "another OpenCV must not reuse"
    assert json.loads((again / "DONE").read_text())["libraries"] == other
    assert _hashes(first) == bytes_before, "the other environment's folder is left as it was"
    files = {k: v for k, v in bytes_before.items() if k != "DONE"}
    assert {k: v for k, v in _hashes(again).items() if k != "DONE"} == files  # same real libraries: the same bytes
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging or aside folder left"


def test_a_folder_whose_facts_do_not_match_its_key_is_rebuilt(tmp_path, micro):
    first = synthetic.build(tmp_path, micro, seed=0, workers=1)
    facts = json.loads((first / "DONE").read_text())
    (first / "DONE").write_text(json.dumps({**facts, "libraries": {"opencv": "0.0.1", "numpy": "0"}}))
    (first / "train" / "marker").write_text("stale")
    again = synthetic.build(tmp_path, micro, seed=0, workers=1)
    assert again == first and not (again / "train" / "marker").exists()
    assert json.loads((again / "DONE").read_text())["libraries"] == cache.library_versions()


def test_incomplete_folder_is_rebuilt(tmp_path, micro):
    stale = tmp_path / cache.cache_name(micro, 0)
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "train.rec").write_bytes(b"partial")
    out = synthetic.build(tmp_path, micro, seed=0, workers=1)
    assert out == stale and (out / "DONE").is_file()
    assert TrainRecordDataset(out / "train" / "train.rec").num_classes == MICRO.train_ids


def test_leftovers_of_a_killed_build_are_recovered(tmp_path, micro):
    """A build killed after moving the previous folder aside: the next build finds the previous complete folder
    (and reuses it) and removes the dead build's staging folder."""
    first = synthetic.build(tmp_path, micro, seed=0, workers=1)
    aside = first.with_name(f".{first.name}.old-{NO_SUCH_PID}-dead")
    stage = first.with_name(f".{first.name}.tmp-{NO_SUCH_PID}-dead")
    first.rename(aside)
    (stage / "train").mkdir(parents=True)
    stamp = (aside / "DONE").stat().st_mtime_ns
    assert synthetic.build(tmp_path, micro, seed=0, workers=1) == first
    assert (first / "DONE").stat().st_mtime_ns == stamp, "the previous complete build came back and was reused"
    assert not aside.exists() and not stage.exists()


def test_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic preset 'huge'"):
        synthetic.build(tmp_path, "huge")
