"""Score-level fusion (validation.score_fusion)."""

import numpy as np
import pytest

from validation.calibration import PairScores, calibrate, split_masks
from validation.score_fusion import fuse_scores


def two_models(seed=0, n=6000, subjects=60):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, subjects, n)
    labels = rng.random(n) < 0.2
    b = np.where(labels, a, (a + rng.integers(1, subjects, n)) % subjects)
    base = np.where(labels, 0.6, 0.1)
    s1 = (base + rng.normal(0, 0.12, n)).astype(np.float32)
    s2 = (3 * base + rng.normal(0, 0.4, n)).astype(np.float32)  # another scale, noisier
    return [PairScores(name, s, labels, a, b, source="test") for name, s in (("one", s1), ("two", s2))]


def test_weights_one_zero_reproduce_model_one_exactly():
    members = two_models()
    calib, _ = split_masks(members[0], seed=0)
    fused, info = fuse_scores(members, calib, weights=[1, 0])
    np.testing.assert_array_equal(fused.scores, members[0].scores)
    assert calibrate(fused, [1e-2], replicates=50) == calibrate(members[0], [1e-2], replicates=50)
    assert info["weights"] == [1.0, 0.0] and not info["fitted"]


def test_fitted_weights_use_the_calibration_half_only_and_help():
    members = two_models()
    calib, held = split_masks(members[0], seed=0)
    fused, info = fuse_scores(members, calib)
    assert info["fitted"] and all(w > 0 for w in info["weights"])
    flipped = members[1].with_scores(np.where(held, -members[1].scores, members[1].scores), "two")
    _, info_flipped = fuse_scores([members[0], flipped], calib)  # held-out scores do not move the fit
    assert info_flipped["weights"] == pytest.approx(info["weights"])
    far = calibrate(fused, [1e-2], replicates=0)["entries"][0]["frr"]
    singles = [calibrate(m, [1e-2], replicates=0)["entries"][0]["frr"] for m in members]
    assert far <= min(singles)


def test_members_on_other_pairs_are_refused():
    one, two = two_models()
    other = PairScores("two", two.scores[:-1], two.labels[:-1])
    with pytest.raises(ValueError, match="same pairs"):
        fuse_scores([one, other], np.ones(len(one.scores), bool), weights=[1, 1])
