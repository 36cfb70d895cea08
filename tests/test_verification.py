"""10-fold verification: the vectorised evaluate equals the plain loop exactly; flip fusion modes."""

import numpy as np
import pytest
from sklearn.model_selection import KFold

from validation.flip_fusion import FUSION_MODES, fuse
from validation.verification import evaluate, evaluate_loop, fold_bounds, pair_distances, verification_accuracy


def _hard_pairs(rng, n_pairs, dim=16, signal=0.35):
    emb = rng.standard_normal((2 * n_pairs, dim)).astype(np.float32)
    issame = rng.random(n_pairs) < 0.5
    emb[1::2][issame] += signal * emb[0::2][issame] * np.sqrt(dim)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb, issame


@pytest.mark.parametrize("seed,n_pairs", [(0, 600), (1, 1003), (2, 57)])
def test_vectorised_equals_loop_exactly(seed, n_pairs):
    emb, issame = _hard_pairs(np.random.default_rng(seed), n_pairs)
    fast, slow = evaluate(emb, issame), evaluate_loop(emb, issame)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
    assert 0.6 < fast[2].mean() < 0.999  # a non-trivial case: thresholds matter


def test_vectorised_equals_loop_with_distances_on_the_grid():
    # quantised embeddings: many tied distances, several exactly representable (0.25, 1.0, ...)
    rng = np.random.default_rng(3)
    emb = (rng.integers(-2, 3, size=(400, 4)) * 0.25).astype(np.float32)
    issame = rng.random(200) < 0.5
    fast, slow = evaluate(emb, issame), evaluate_loop(emb, issame)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)


def test_strict_less_and_first_maximum():
    # same pairs at distance 0, different pairs at distance 4: threshold 0.00 predicts nothing (0 < 0 is false),
    # 0.01 ... 3.99 are all perfect, and the first maximum (0.01) is chosen
    n = 40
    emb = np.zeros((2 * n, 2), np.float32)
    emb[:, 0] = 1
    issame = np.arange(n) % 2 == 0
    emb[1::2][~issame] = [-1, 0]
    tpr, fpr, acc, best = evaluate(emb, issame)
    np.testing.assert_array_equal(best, np.full(10, 0.01))
    np.testing.assert_array_equal(acc, np.ones(10))
    assert tpr[0] == 0 and tpr[1] == 1 and fpr[-1] == 0
    assert verification_accuracy(emb, issame) == 100.0


def test_distance_keeps_float32():
    emb = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    d = pair_distances(emb)
    assert d.dtype == np.float32
    np.testing.assert_array_equal(d, np.sum(np.square(emb[0::2] - emb[1::2]), 1))


@pytest.mark.parametrize("n", [10, 57, 6000])
def test_folds_are_contiguous_like_kfold(n):
    ours = fold_bounds(n, 10)
    ref = [(int(test[0]), int(test[-1]) + 1) for _, test in KFold(10, shuffle=False).split(np.arange(n))]
    assert ours == ref


def test_fusion_modes():
    rng = np.random.default_rng(0)
    e = rng.standard_normal((5, 8)).astype(np.float32)
    f = rng.standard_normal((5, 8)).astype(np.float32)
    n, nf = np.linalg.norm(e, axis=1, keepdims=True), np.linalg.norm(f, axis=1, keepdims=True)
    e, f = e / n, f / nf
    s = e * n + f * nf
    unit, norm = fuse(e, n, f, nf, "pre_norm_add")
    np.testing.assert_allclose(unit, s / np.linalg.norm(s, axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(unit * norm, s, rtol=1e-5)
    weighted, _ = fuse(e, n, f, nf, "norm_weighted")
    np.testing.assert_allclose(weighted, unit, atol=1e-6)  # same direction as pre_norm_add
    avg, avg_norm = fuse(e, n, f, nf, "average")
    np.testing.assert_allclose(avg, (e + f) / np.linalg.norm(e + f, axis=1, keepdims=True), rtol=1e-6)
    np.testing.assert_allclose(avg_norm, (n + nf) / 2)
    cat, _ = fuse(e, n, f, nf, "concat")
    assert cat.shape == (5, 16)
    np.testing.assert_allclose(cat, np.concatenate([e, f], 1) / np.sqrt(2), atol=1e-6)
    for mode in FUSION_MODES:
        u, _ = fuse(e, n, f, nf, mode)
        np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1, rtol=1e-5)
    same, same_norm = fuse(e, n, None, None)
    assert same is e and same_norm.shape == (5, 1)
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse(e, n, f, nf, "max")
