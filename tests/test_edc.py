"""Error-versus-discard characteristic (validation.edc)."""

import numpy as np
import pytest

from validation.calibration import PairScores
from validation.edc import edc


def pairs_with_quality(informative: bool, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.uniform(10, 30, n)
    scores = 0.2 + 0.02 * (q - 10) + rng.normal(0, 0.1, n) if informative else 0.4 + rng.normal(0, 0.1, n)
    labels = np.ones(n, bool)
    return PairScores("edc", scores, labels, quality_a=q, quality_b=q + rng.uniform(0, 5, n), source="test")


def test_informative_quality_beats_random_discard():
    res = edc(pairs_with_quality(True), threshold=0.3, target_fnmr=0.2)
    assert res["fnmr_quality"][0] == pytest.approx(res["fnmr_random"][0])  # nothing discarded yet
    assert res["pauc_quality"] < 0.8 * res["pauc_random"]
    assert res["fnmr_quality"][-1] < res["fnmr_quality"][0]
    qt = res["quality_threshold"]
    assert qt is not None and qt["fnmr"] <= 0.2 and 0 < qt["discarded_fraction"] <= 0.2
    unreachable = edc(pairs_with_quality(True), threshold=0.3, target_fnmr=1e-4)
    assert unreachable["quality_threshold"] is None and "not reached" in unreachable["quality_threshold_note"]


def test_uninformative_quality_is_about_random():
    res = edc(pairs_with_quality(False), threshold=0.3)
    assert res["pauc_quality"] == pytest.approx(res["pauc_random"], rel=0.15)


def test_no_quality_is_an_error():
    with pytest.raises(ValueError, match="no image qualities"):
        edc(PairScores("x", [0.1, 0.2], [True, True]), 0.0)
