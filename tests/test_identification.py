"""Closed-set rank-k (TinyFace) and SCface rank-1: hand-made examples; chunked == one-shot."""

import numpy as np
import pytest

from validation.identification import cmc, scface_metrics, tinyface_metrics, topk_gallery


def _unit(angles_deg):
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], 1).astype(np.float32)


def test_rank_k_hand_made():
    # integer vectors: every score is exact, so the ranks below are certain
    gallery = np.array([[3, 0], [2, 1], [1, 2], [0, 3], [-3, 0]], np.float32)
    gallery_labels = np.array([7, -1, -1, 8, 9])  # -1 = distractor, never a mate
    probe = np.array([[1, 0], [0, 1], [1, 1], [1, 0]], np.float32)
    probe_labels = np.array([7, 7, 9, 5])
    # probe 0: scores 3,2,1,0,-3 -> mate rank 1
    # probe 1: scores 0,1,2,3,0 -> order 3,2,1, then the tie 0/4 by lower index -> mate (index 0) rank 4
    # probe 2: scores 3,3,3,3,-3 -> mate (index 4) rank 5;  probe 3: label 5 has no mate -> not scored
    res = cmc(probe, probe_labels, gallery, gallery_labels, ranks=(1, 3, 4, 5))
    assert res == pytest.approx({1: 100 / 3, 3: 100 / 3, 4: 200 / 3, 5: 100.0})


def test_ties_broken_by_lower_index_whatever_the_chunks():
    gallery = np.ones((50, 3), np.float32)  # all tied
    probe = np.ones((2, 3), np.float32)
    for chunk in (7, 50, 1000):
        _, idx = topk_gallery(probe, gallery, 5, chunk_size=chunk)
        np.testing.assert_array_equal(idx, np.tile(np.arange(5), (2, 1)))


@pytest.mark.parametrize("chunk", [1, 13, 64, 500])
def test_chunked_equals_one_shot(chunk):
    rng = np.random.default_rng(0)
    # small integers: exact scores whatever the BLAS path, and many ties
    gallery = rng.integers(-2, 3, size=(300, 8)).astype(np.float32)
    probe = rng.integers(-2, 3, size=(40, 8)).astype(np.float32)
    full = probe @ gallery.T
    ref = np.lexsort((np.broadcast_to(np.arange(300), full.shape), -full), axis=1)[:, :20]
    _, idx = topk_gallery(probe, gallery, 20, chunk_size=chunk)
    np.testing.assert_array_equal(idx, ref)
    labels = rng.integers(0, 30, 300)
    plabels = rng.integers(0, 30, 40)
    assert cmc(probe, plabels, gallery, labels, (1, 5, 20), chunk_size=chunk) == cmc(
        probe, plabels, gallery, labels, (1, 5, 20), chunk_size=10_000)


def test_tinyface_splits_and_distractors():
    emb = _unit([0, 40, 0.5, 41, 0.2])
    labels = np.array([1, 2, 1, 2, -1])
    split = np.array(["probe", "probe", "gallery_match", "gallery_match", "gallery_distractor"])
    # probe 0 (0 deg): distractor at 0.2 deg beats its mate at 0.5 deg -> rank 2; probe 1: mate at rank 1
    res = tinyface_metrics(emb, labels, split, ranks=(1, 2))
    assert res == {"tinyface/rank_1": 50.0, "tinyface/rank_2": 100.0}


def test_scface_rank1_per_distance():
    gallery = _unit([0, 90])  # subjects 1, 2
    probes = _unit([10, 80, 50, 40, 100, 5])
    emb = np.concatenate([gallery, probes])
    labels = np.array([1, 2, 1, 2, 1, 2, 2, 1])
    split = np.array(["gallery"] * 2 + ["probe"] * 6)
    distance = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    # d1: 10->1 ok, 80->2 ok; d2: 50->2 wrong, 40->1 wrong; d3: 100->2 ok, 5->1 ok
    assert scface_metrics(emb, labels, split, distance) == {"scface/d1": 100.0, "scface/d2": 0.0, "scface/d3": 100.0}
