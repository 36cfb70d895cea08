"""IJB 1:1: TAR@FAR vs sklearn's roc_curve + the nearest rule, template pooling, chunked scoring, meta readers."""

import numpy as np
import pytest
from sklearn.metrics import roc_curve as sk_roc_curve

from validation import ijb


def _reference_tar(labels, scores, fars):
    """The reference recipe: sklearn ROC, flipped; nearest FPR with (gap, index) ties -> highest TPR."""
    fpr, tpr, _ = sk_roc_curve(labels, scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    out = {}
    for far in fars:
        _, i = min(zip(np.abs(fpr - far), range(len(fpr))))
        out[far] = tpr[i]
    return out


@pytest.mark.parametrize("seed,n,decimals", [(0, 20_000, 6), (1, 5_000, 2), (2, 300, 1)])
def test_tar_at_far_matches_sklearn(seed, n, decimals):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.1).astype(np.int8)
    scores = np.round(rng.standard_normal(n) + 1.5 * labels, decimals).astype(np.float32)  # ties when rounded
    fars = ijb.FARS + (0.3, 0.5)
    assert ijb.tar_at_far(labels, scores, fars) == _reference_tar(labels, scores, fars)
    ours = ijb.roc_curve(labels, scores)
    ref = sk_roc_curve(labels, scores)
    for a, b in zip(ours, ref):
        np.testing.assert_array_equal(a, b)


def test_image2template_feature_hand_made():
    feats = np.array([[1, 0], [0, 1], [1, 0], [0, 2], [3, 4]], np.float32)
    templates = np.array([5, 5, 5, 2, 9])
    medias = np.array([10, 10, 11, 12, 10])  # media 10 appears in templates 5 and 9: pooled per template
    out, unique = ijb.image2template_feature(feats, templates, medias)
    np.testing.assert_array_equal(unique, [2, 5, 9])
    # template 5: mean of media 10 = (.5, .5), plus media 11 = (1, 0) -> (1.5, .5); template 2 -> (0, 1)
    expected = np.array([[0, 1], np.array([1.5, 0.5]) / np.hypot(1.5, 0.5), [0.6, 0.8]])
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_image_features_unit_norm_faceness():
    emb = np.array([[1, 0], [0, 1]], np.float32)
    norm = np.array([[2], [3]], np.float32)
    unit = ijb.image_features(emb, norm, emb, norm, "unit")
    np.testing.assert_allclose(unit, emb)
    raw = ijb.image_features(emb, norm, emb, norm, "norm")
    np.testing.assert_allclose(raw, [[4, 0], [0, 6]])
    weighted = ijb.image_features(emb, norm, emb, norm, "norm", faceness=np.array([0.5, 1.0]))
    np.testing.assert_allclose(weighted, [[2, 0], [0, 6]])
    with pytest.raises(ValueError, match="unknown IJB image feature"):
        ijb.image_features(emb, norm, feature="raw")


@pytest.mark.parametrize("n_pairs", [50, 5_000])  # sparse pairs -> row gathers; dense -> Gram blocks
def test_chunked_verification_equals_direct(n_pairs):
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((120, 16)).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    unique = np.sort(rng.choice(10_000, 120, replace=False))
    i1, i2 = rng.integers(0, 120, n_pairs), rng.integers(0, 120, n_pairs)
    direct = np.einsum("ij,ij->i", feats[i1], feats[i2])
    for block_bytes in (64 << 20, 4 * 120 * 7, 1):
        scores = ijb.verification(feats, unique, unique[i1], unique[i2], block_bytes=block_bytes)
        np.testing.assert_allclose(scores, direct, atol=2e-6)
    with pytest.raises(KeyError, match="no features"):
        ijb.verification(feats, unique, np.array([unique[0]]), np.array([10_001]))


def test_evaluate_1v1_perfect_separation():
    feats = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], np.float32)
    tar, (fpr, tpr) = ijb.evaluate_1v1(feats, [1, 2, 3, 4], [1, 2, 3, 4], [1, 3, 1, 2], [2, 4, 3, 4], [1, 1, 0, 0])
    assert tar[1e-4] == 1.0 and fpr[0] == 0 and tpr[-1] == 1


def test_read_meta_files(tmp_path):
    tid_mid = tmp_path / "ijbb_face_tid_mid.txt"
    tid_mid.write_text("1.jpg 1 10\n2.jpg 1 10\n3.jpg 7 12\n")
    templates, medias = ijb.read_template_media_list(tid_mid)
    np.testing.assert_array_equal(templates, [1, 1, 7])
    np.testing.assert_array_equal(medias, [10, 10, 12])
    pairs = tmp_path / "ijbb_template_pair_label.txt"
    pairs.write_text("1 7 0\n7 1 1\n  12   3 0\n")
    t1, t2, label = ijb.read_template_pair_list(pairs)
    np.testing.assert_array_equal(t1, [1, 7, 12])
    np.testing.assert_array_equal(t2, [7, 1, 3])
    np.testing.assert_array_equal(label, [0, 1, 0])
    bad = tmp_path / "bad.txt"
    bad.write_text("1 7 0\n7 x 1\n")
    with pytest.raises(ValueError, match="bad.txt"):
        ijb.read_template_pair_list(bad)
    gallery = tmp_path / "ijbb_1N_gallery_S1.csv"
    gallery.write_text("TEMPLATE_ID,SUBJECT_ID,FILENAME\n5,3,a.jpg\n5,3,b.jpg\n2,8,c.jpg\n")
    tids, sids = ijb.read_1n_list(gallery)
    np.testing.assert_array_equal(tids, [2, 5])
    np.testing.assert_array_equal(sids, [8, 3])


def test_identification_1n():
    # gallery: templates 10 (subject 1), 20 (subject 2); probe 40 (subject 1) is close to 10; probe 50 (subject 9,
    # not enrolled) scores at most 0.2
    probe_feats = np.concatenate([np.eye(3), [[0.9, 0.1, 0], [0, 0.2, 0.98]]]).astype(np.float32)
    unique = np.array([10, 20, 30, 40, 50])
    res = ijb.identification_1n(probe_feats, unique, [10, 20], [1, 2], [40, 50], [1, 9], ranks=(1,), fpirs=(0.5,))
    assert res["rank_1"] == 100.0
    assert res["tpir_fpir_5e-1"] == 100.0  # threshold = the only non-mated top score (0.2) < 0.9
