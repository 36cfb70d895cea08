"""The `folders` validation protocol: pairs, degradation levels, metrics and the files beside the results."""

import json
import logging

import cv2
import numpy as np
import pytest

from dataset.synthetic.quality import DEGRADATIONS, degrade
from validation import pairs as pm
from validation.protocols import SetEmbeddings, build_protocol
from validation.protocols.folders import overlap


def _folders(root, counts, seed=0):
    rng = np.random.default_rng(seed)
    for k, n in enumerate(counts):
        for j in range(n):
            path = root / f"id{k:02d}" / f"{j}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))
    return root


def _protocol(root, **options):
    spec = {"kind": "folders", "path": str(root), "levels": ["clean", "blur"], **options}
    return build_protocol("mine", spec)


def _identity_embeddings(protocol, noise=0.02, seed=0):
    """Each image's embedding = its identity's direction + noise (degraded copies noisier)."""
    rng = np.random.default_rng(seed)
    ids = protocol.image_identity
    base = np.eye(64, dtype=np.float32)[ids % 64]
    rows = []
    for level in protocol.levels:
        e = base + rng.normal(0, noise * (1 if level == "clean" else 3), base.shape).astype(np.float32)
        rows.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    emb = np.concatenate(rows)
    return SetEmbeddings(emb, np.ones((len(emb), 1), np.float32))


def test_pairs_are_deterministic_capped_and_at_the_stated_ratio(tmp_path):
    from dataset.convert import list_identity_folders

    folders = list_identity_folders(_folders(tmp_path, [6, 3, 1, 4]))
    p1 = pm.build_pairs(folders, genuine_per_identity=5, impostor_ratio=2.0, seed=3)
    p2 = pm.build_pairs(folders, genuine_per_identity=5, impostor_ratio=2.0, seed=3)
    assert p1.rows() == p2.rows()
    n_gen = int(p1.same.sum())
    assert n_gen == 5 + 3 + 5  # 15 combos capped at 5, 3, none for the single image, 6 capped at 5
    assert len(p1) - n_gen == 2 * n_gen
    ident = np.asarray(p1.identities)
    assert (ident[p1.a[p1.same]] == ident[p1.b[p1.same]]).all()
    assert (ident[p1.a[~p1.same]] != ident[p1.b[~p1.same]]).all()
    assert len({(min(a, b), max(a, b)) for a, b in zip(p1.a, p1.b)}) == len(p1)  # no pair twice
    assert any("id02: one image" in n for n in p1.notes)
    assert pm.build_pairs(folders, 5, 2.0, seed=4).rows() != p1.rows()


def test_single_image_identities_only_is_an_error(tmp_path):
    from dataset.convert import list_identity_folders

    with pytest.raises(ValueError, match="no genuine pair"):
        pm.build_pairs(list_identity_folders(_folders(tmp_path, [1, 1])))


def test_metrics_on_known_scores():
    same = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.6, 0.1, 0.0, -0.1])
    far, tar, _ = pm.roc(scores, same)
    assert pm.eer(far, tar) == pytest.approx(0.25)
    assert pm.f1_at(scores, same, 0.5) == pytest.approx(2 * 3 / (4 + 4))
    res = pm.tar_at_far_with_threshold(scores, same, fars=(0.75, 0.5, 0.1))
    assert res[0.75]["tar"] == pytest.approx(1.0) and res[0.75]["impostors"] == 4  # 3 of 4 impostors may pass
    assert res[0.5]["tar"] is None and res[0.5]["needed"] == 6  # 3 / FAR impostors needed
    assert res[0.1]["tar"] is None and res[0.1]["needed"] == 30  # 4 impostors cannot resolve FAR 0.1


def test_folds_split_by_identity(tmp_path):
    protocol = _protocol(_folders(tmp_path, [4] * 12))
    ident = np.asarray(protocol.pairs.identities)
    folds = protocol.fold_of_pair
    genuine = protocol.pairs.same
    for name in set(ident):
        assert len(set(folds[genuine & (ident[protocol.pairs.a] == name)])) == 1
    assert len(set(folds)) == 10


def test_protocol_metrics_artifacts_and_null_fars(tmp_path):
    protocol = _protocol(_folders(tmp_path / "eval", [4] * 12), levels=["clean", "blur", "jpeg"], threshold=0.5)
    assert protocol.num_images() == 48 * 3
    dataset = protocol.dataset()
    img, index = dataset[48 + 5]
    assert img.shape == (3, 112, 112) and index == 53
    metrics = protocol.compute(_identity_embeddings(protocol), "pre_norm_add")
    for level in ("clean", "blur", "jpeg"):
        assert metrics[f"mine/{level}/acc"] == 100.0 and metrics[f"mine/{level}/f1"] == 100.0
        assert metrics[f"mine/{level}/rank_1"] == 100.0 and metrics[f"mine/{level}/eer"] == 0.0
        assert metrics[f"mine/{level}/f1_at_threshold"] == 100.0
        assert "mine/clean/tar_far_1e-1" in metrics and "mine/clean/tar_far_1e-2" not in metrics  # 72 impostors
    written = protocol.artifacts(tmp_path / "run")
    names = sorted(p.name for p in written)
    assert names == ["det_mine.png", "folders_mine.json", "pairs_mine.csv", "roc_mine.png", "scores_mine.png"]
    report = json.loads((tmp_path / "run" / "folders_mine.json").read_text())
    assert report["impostor_ratio"] == 1.0 and report["genuine_pairs"] == report["impostor_pairs"] == 72
    assert report["levels"]["blur"]["tar_at_far"]["1e-2"] == {"tar": None, "threshold": None, "impostors": 72,
                                                              "needed": 300}
    assert (tmp_path / "run" / "pairs_mine.csv").read_text().splitlines()[0] == "path_a,path_b,same"
    assert "1e-2 (needs 300)" in protocol.describe() and "ratio 1:1.00" in protocol.describe()


def test_degrade_both_degrades_the_first_image_too(tmp_path):
    root = _folders(tmp_path, [3] * 4)
    second, both = _protocol(root), _protocol(root, degrade="both")
    emb = _identity_embeddings(second, noise=0.3)
    second.compute(emb, "pre_norm_add")
    both.compute(emb, "pre_norm_add")
    s_gen, b_gen = second._results["blur"]["genuine"], both._results["blur"]["genuine"]
    assert not np.allclose(s_gen, b_gen)
    np.testing.assert_allclose(second._results["clean"]["genuine"], both._results["clean"]["genuine"])


def test_user_pairs_csv_and_its_missing_files(tmp_path):
    root = _folders(tmp_path / "eval", [2, 2])
    (root / "pairs.csv").write_text("path_a,path_b,same\nid00/0.jpg,id00/1.jpg,1\nid00/0.jpg,id01/1.jpg,0\n")
    protocol = _protocol(root, pairs="pairs.csv")
    assert len(protocol.pairs) == 2 and protocol.pairs.same.tolist() == [True, False]
    assert len(protocol.pairs.paths) == 3  # only the images the pairs name
    (root / "bad.csv").write_text("path_a,path_b,same\nid00/0.jpg,id00/9.jpg,1\n")
    with pytest.raises(FileNotFoundError, match=r"bad.csv names 1 missing .*line 2: .*id00/9.jpg"):
        _protocol(root, pairs="bad.csv")
    (root / "nohead.csv").write_text("a,b,c\n")
    with pytest.raises(ValueError, match="path_a,path_b,same"):
        _protocol(root, pairs="nohead.csv")


def test_unknown_degradation_level_is_refused(tmp_path, compose):
    from tasks.config import validate_config

    root = _folders(tmp_path / "eval", [2, 2])
    with pytest.raises(ValueError, match="unknown degradation level 'smudge'; known levels: clean, blur"):
        _protocol(root, levels=["clean", "smudge"])
    cfg = compose("validation=folders", f"validation.root={root}", "validation.protocols.folders.levels=[blur,smudge]")
    with pytest.raises(ValueError, match=r"validation.protocols.folders.levels"):
        validate_config(cfg)
    with pytest.raises(ValueError, match="validation.root"):
        validate_config(compose("validation=folders"))


def test_degradation_levels_are_deterministic_and_degrade():
    img = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    assert (degrade(img, "clean") == img).all()
    for level in DEGRADATIONS:
        out = degrade(img, level)
        assert out.shape == img.shape and (out == degrade(img, level)).all()
        if level != "clean":
            assert np.abs(out.astype(int) - img).mean() > 5


def test_overlap_of_training_and_evaluation_folders_is_warned(tmp_path, compose, caplog):
    from tasks.train import build_suite, warn_overlap

    train = _folders(tmp_path / "train", [2, 2], seed=1)
    evaluation = _folders(tmp_path / "eval", [2, 2, 2], seed=2)
    (evaluation / "id02" / "copy.jpg").write_bytes((train / "id01" / "0.jpg").read_bytes())
    problems = overlap(train, evaluation)
    assert "2 identity names in both: id00, id01" in problems[0] and "1 identical images" in problems[1]
    cfg = compose("data=folders", f"data.root={train}", "validation=folders", f"validation.root={evaluation}")
    with caplog.at_level(logging.WARNING):
        assert len(warn_overlap(cfg, build_suite(cfg))) == 2
    assert "are not disjoint" in caplog.text


def test_saved_pair_list_reads_back_as_user_pairs(tmp_path):
    root = _folders(tmp_path / "eval", [3, 3, 2])
    built = _protocol(root)
    built.artifacts(tmp_path / "run")
    again = _protocol(root, pairs=str(tmp_path / "run" / "pairs_mine.csv"))
    assert again.pairs.rows(root) == built.pairs.rows(root)


def test_pair_scores_for_calibration_cover_every_level_with_folder_subjects(tmp_path):
    protocol = _protocol(_folders(tmp_path / "eval", [4] * 6), levels=["clean", "blur"])
    emb = _identity_embeddings(protocol, noise=0.2)
    n_img = len(protocol.pairs.paths)
    norms = np.concatenate([np.full((n_img, 1), 20.0), np.full((n_img, 1), 5.0)]).astype(np.float32)
    emb = SetEmbeddings(emb.emb, norms)
    pairs = protocol.pair_scores(emb, "pre_norm_add")
    n = len(protocol.pairs)
    assert len(pairs.scores) == 2 * n and pairs.labels.sum() == 2 * protocol.pairs.same.sum()
    np.testing.assert_array_equal(pairs.subject_a[:n], protocol.image_identity[protocol.pairs.a])
    # clean level: both sides clean (norm 20); blur level: the second side degraded (norm 5), the first clean
    assert (pairs.quality_a == 20).all() and (pairs.quality_b[:n] == 20).all() and (pairs.quality_b[n:] == 5).all()
    protocol.compute(emb, "pre_norm_add")
    np.testing.assert_allclose(np.sort(pairs.scores[n:][pairs.labels[n:]]),
                               np.sort(protocol._results["blur"]["genuine"]), rtol=1e-5, atol=1e-6)
