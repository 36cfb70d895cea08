"""1:N identification: exact and IVF search, the gallery file, open-set thresholds, task=enroll / identify end to
end with a tiny model (identity folders and task=embed folders), and the refusals (other model, empty gallery,
concurrent enroll)."""

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from common.run_lock import RunDirBusy, RunDirLock
from inference.embedder import run_embed
from inference.gallery import (
    Gallery,
    load_gallery,
    merge,
    save_gallery,
    search_identities,
    threshold_from_far,
    threshold_from_nonmated,
)
from inference.identify import run_enroll, run_identify
from inference.model_identity import model_identity
from inference.search import ExactIndex, IvfIndex, noisy_queries, pick_nprobe, recall_sweep


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_exact_search_orders_and_ivf_recall_rises_with_nprobe():
    rng = np.random.default_rng(0)
    gallery = unit(rng.standard_normal((4000, 32)))
    probes = noisy_queries(gallery, 300, cosine=0.7, seed=1)
    exact = ExactIndex(gallery, block=64)
    scores, rows = exact.search(probes, 5)
    full = probes @ gallery.T
    np.testing.assert_array_equal(rows[:, 0], full.argmax(1))
    assert (np.diff(scores, axis=1) <= 0).all()
    ivf = IvfIndex.build(gallery, seed=0)
    assert ivf.nlist == round(np.sqrt(4000))
    sweep = recall_sweep(ivf, exact, probes, nprobes=(1, 8, 63))
    recalls = [r["recall_at_1"] for r in sweep]
    assert recalls == sorted(recalls) and recalls[-1] == 1.0 and recalls[0] < 1.0
    assert pick_nprobe(sweep, 0.999) == 63
    again = IvfIndex.from_bytes(ivf.to_bytes(), 63)
    np.testing.assert_array_equal(again.search(probes, 1)[1], rows[:, :1])
    with pytest.raises(ValueError, match="non-finite"):
        exact.search(np.full((1, 32), np.nan, np.float32), 1)


def test_top_k_identities_count_each_identity_once():
    emb = unit(np.array([[1, 0], [0.99, 0.1], [0.9, 0.4], [0, 1]], np.float32))
    g = merge(None, emb, ["a", "a", "b", "c"], ["1", "2", "3", "4"], {"sha256": "x"}, None)
    scores, ids = search_identities(g, ExactIndex(g.embeddings), unit(np.array([[1, 0.05]], np.float32)), 3)
    assert [g.identities[i] for i in ids[0]] == ["a", "b", "c"]
    assert (np.diff(scores[0]) <= 0).all()


def test_open_set_thresholds():
    top1 = np.linspace(0, 1, 1000)
    rule = threshold_from_nonmated(top1, 0.01)
    assert rule["fpir_measured"] <= 0.01 and (top1 > rule["threshold"]).sum() == 10
    with pytest.raises(ValueError, match="at least 100 non-mated"):
        threshold_from_nonmated(top1[:50], 0.01)
    cal = {"protocols": {"ijbb": {"impostors": 10, "entries": [
        {"far": 1e-2, "threshold": 0.2}, {"far": 1e-3, "threshold": 0.3}, {"far": 1e-4, "threshold": None}]}}}
    rule = threshold_from_far(cal, 0.1, 50)  # wants FAR <= 2e-3: 1e-3 is the largest calibrated one below
    assert rule["far_used"] == 1e-3 and rule["threshold"] == 0.3 and rule["source"] == "FAR = FPIR / N"
    with pytest.raises(ValueError, match="resolves only"):
        threshold_from_far(cal, 0.01, 1000)


def test_gallery_file_round_trip_and_bad_files(tmp_path):
    g = merge(None, unit(np.eye(3, 8, dtype=np.float32)), ["a", "b", "b"], ["x", "y", "z"],
              {"sha256": "s", "file": "m.onnx"}, None)
    path = save_gallery(tmp_path / "g.npz", g)
    with np.load(path, allow_pickle=False) as data:  # no pickled objects anywhere in the file
        assert set(data.files) == {"embeddings", "labels", "meta"}
    back = load_gallery(path)
    assert back.identities == ["a", "b"] and back.labels.tolist() == [0, 1, 1] and back.model["sha256"] == "s"
    save_gallery(tmp_path / "empty.npz", Gallery(np.zeros((0, 8), np.float32), np.zeros(0, np.int64), [], [], {}))
    with pytest.raises(ValueError, match="empty.npz is empty"):
        load_gallery(tmp_path / "empty.npz")
    with pytest.raises(ValueError, match="unit vectors"):
        save_gallery(tmp_path / "bad.npz", Gallery(np.ones((1, 8), np.float32), np.zeros(1, np.int64), ["a"],
                                                   ["x"], {}))
    np.savez(tmp_path / "other.npz", embeddings=np.zeros((1, 8)))
    with pytest.raises(ValueError, match="other.npz: not a gallery file"):
        load_gallery(tmp_path / "other.npz")


def faces(root: Path, people: dict[str, int], seed: int, noise: float = 12.0) -> Path:
    """Aligned 112x112 crops: identity = a fixed random face, images = it plus pixel noise."""
    for name, count in people.items():
        base = np.random.default_rng(abs(hash(name)) % 2**32).integers(0, 255, (112, 112, 3)).astype(np.float32)
        (root / name).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        for i in range(count):
            img = np.clip(base + rng.normal(0, noise, base.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / name / f"{i}.png"), img)
    return root


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, save_tiny):
    tmp = tmp_path_factory.mktemp("gallery")
    ckpt = save_tiny(tmp / "tiny.pt", 0)
    people = {f"p{i:02d}": 2 for i in range(12)}
    faces(tmp / "people", dict(list(people.items())[:8]), seed=0)
    gallery = tmp / "g" / "gallery.npz"
    run_enroll(tmp / "people", gallery, checkpoint=ckpt, arch="tiny", index="exact")
    faces(tmp / "more", dict(list(people.items())[8:]), seed=0)
    run_enroll(tmp / "more", gallery, checkpoint=ckpt, arch="tiny", index="exact")  # an addition
    return tmp, ckpt, gallery


def test_enroll_adds_and_identify_finds_the_right_identity(enrolled, capsys):
    tmp, ckpt, gallery = enrolled
    g = load_gallery(gallery)
    assert len(g.identities) == 12 and g.size == 24
    assert g.model["sha256"] == model_identity(ckpt, "tiny")["sha256"] and g.model["flip_fusion"] is None
    probes = faces(tmp / "probes", {"p03": 1, "p10": 1}, seed=5)
    strangers = faces(tmp / "strangers", {f"s{i:03d}": 1 for i in range(100)}, seed=6)
    res = run_identify(probes, gallery, tmp / "out", checkpoint=ckpt, arch="tiny", k=3, fpir=0.01,
                       nonmated=strangers)
    with open(tmp / "out" / "identify.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    top = {r["probe"]: r["identity"] for r in rows if r["rank"] == "1"}
    assert top == {"p03/0.png": "p03", "p10/0.png": "p10"}
    assert res["decision"]["source"] == "non-mated searches" and res["decision"]["searches"] == 100
    assert json.loads((tmp / "out" / "identify.json").read_text())["search"] == "exact"
    assert "from 100 non-mated searches" in capsys.readouterr().out


def test_probe_model_must_be_the_gallery_model(enrolled, tmp_path, save_tiny):
    tmp, _, gallery = enrolled
    other = save_tiny(tmp_path / "other.pt", 1)
    with pytest.raises(ValueError, match=r"refusing gallery .*gallery.npz.*sha256"):
        run_identify(tmp / "people", gallery, tmp_path / "out", checkpoint=other, arch="tiny")
    with pytest.raises(ValueError, match="enrolled with another model"):
        run_enroll(tmp / "more", gallery, checkpoint=other, arch="tiny")


def test_embeddings_folder_enrolls_with_its_model(enrolled, tmp_path):
    tmp, ckpt, _ = enrolled
    run_embed(tmp / "people", tmp_path / "emb", checkpoint=ckpt, arch="tiny", progress=False)
    gallery = tmp_path / "g.npz"
    run_enroll(tmp_path / "emb", gallery, index="exact")
    g = load_gallery(gallery)
    assert len(g.identities) == 8 and g.model["sha256"] == model_identity(ckpt, "tiny")["sha256"]
    os.remove(tmp_path / "emb" / "model.json")
    with pytest.raises(ValueError, match="missing model.json"):
        run_enroll(tmp_path / "emb", tmp_path / "g2.npz")


def test_concurrent_enroll_is_refused_and_empty_input_fails(enrolled, tmp_path):
    tmp, ckpt, _ = enrolled
    gallery = tmp_path / "g.npz"
    busy = pytest.raises(RunDirBusy, match="being enrolled into by another process")
    with RunDirLock(tmp_path, name=".g.npz.lock"), busy:  # another enroll holds the gallery
        run_enroll(tmp / "people", gallery, checkpoint=ckpt, arch="tiny")
    (tmp_path / "nobody").mkdir()
    with pytest.raises(ValueError, match="no face to enroll"):
        run_enroll(tmp_path / "nobody", gallery, checkpoint=ckpt, arch="tiny")
    assert not gallery.exists()


def test_enroll_builds_ivf_and_prints_recall(enrolled, tmp_path, capsys):
    tmp, ckpt, _ = enrolled
    run_enroll(tmp / "people", tmp_path / "g.npz", checkpoint=ckpt, arch="tiny", index="ivf", nlist=2)
    g = load_gallery(tmp_path / "g.npz")
    assert g.index["kind"] == "ivf" and g.index["nlist"] == 2 and g.ivf is not None
    assert "recall@1" in capsys.readouterr().out
    res = run_identify(tmp / "people", tmp_path / "g.npz", tmp_path / "out", checkpoint=ckpt, arch="tiny", k=1)
    assert res["search"] == "ivf" and res["decision"] is None


def test_identify_threshold_from_far_of_the_gallery_thresholds_file(enrolled, tmp_path, capsys):
    tmp, ckpt, _ = enrolled
    model = model_identity(ckpt, "tiny", flip_fusion="pre_norm_add")
    doc = {"model": model, "protocols": {"ijbb": {"impostors": 1000, "entries": [
        {"far": 1e-2, "threshold": 0.4}, {"far": 1e-3, "threshold": 0.5}]}}}
    (tmp_path / "thresholds.json").write_text(json.dumps(doc))
    gallery = tmp_path / "g.npz"
    run_enroll(tmp / "people", gallery, checkpoint=ckpt, arch="tiny", thresholds=tmp_path / "thresholds.json")
    assert load_gallery(gallery).model["flip_fusion"] == "pre_norm_add"  # embedded as the thresholds were made
    res = run_identify(tmp / "more", gallery, tmp_path / "out", checkpoint=ckpt, arch="tiny", fpir=0.05)
    rule = res["decision"]  # 8 identities: FAR = 0.05 / 8 = 6.25e-3 -> the calibrated 1e-3
    assert rule["source"] == "FAR = FPIR / N" and rule["far_used"] == 1e-3 and rule["threshold"] == 0.5
    assert "FAR = FPIR / N" in capsys.readouterr().out
    (tmp_path / "thresholds.json").write_text(json.dumps({**doc, "fars": [1e-2]}))
    with pytest.raises(ValueError, match="changed since gallery"):
        run_identify(tmp / "more", gallery, tmp_path / "out2", checkpoint=ckpt, arch="tiny")


def test_enroll_and_identify_tasks_write_inside_output_dir(enrolled, tmp_path):
    """The task runners: enroll's gallery defaults to <output_dir>/gallery.npz, identify writes into output_dir
    (default <run dir>/identify, any folder with output_dir=...)."""
    from tasks import enroll, identify
    from tasks.config import compose_config

    tmp, ckpt, _ = enrolled
    common = [f"checkpoint={ckpt}", "backbone=tiny"]
    cfg = compose_config(["task=enroll", f"enroll.input={tmp / 'people'}", "enroll.index=exact", *common],
                         output_dir=str(tmp_path / "run"))
    assert cfg.enroll.gallery == str(tmp_path / "run" / "enroll" / "gallery.npz")
    enroll.run(cfg)
    assert load_gallery(cfg.enroll.gallery).size == 16
    probes = faces(tmp_path / "probes", {"p03": 1}, seed=5)
    cfg = compose_config(["task=identify", f"identify.probes={probes}", f"identify.gallery={cfg.enroll.gallery}",
                          "identify.k=1", f"output_dir={tmp_path / 'results'}", *common], output_dir=str(tmp_path))
    res = identify.run(cfg)
    assert res["output_dir"] == str(tmp_path / "results")
    with open(tmp_path / "results" / "identify.csv", newline="") as f:
        assert [r["identity"] for r in csv.DictReader(f)] == ["p03"]


def test_enroll_identify_config_ranges_fail_before_any_data(compose):
    from tasks.config import validate_config

    for override, key in (("identify.fpir=0", "identify.fpir"), ("identify.k=0", "identify.k"),
                          ("enroll.index=hnsw", "enroll.index"), ("enroll.target_recall=1.5", "enroll.target_recall"),
                          ("export.check_count=0", "export.check_count"), ("photo.batch_size=0", "photo.batch_size")):
        task = "enroll" if key.startswith("photo") else key.split(".")[0]
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            validate_config(compose(f"task={task}", override))
    with pytest.raises(ValueError, match="identify.probes"):
        from tasks import identify

        identify.run(compose("task=identify"))
