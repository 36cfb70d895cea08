"""Threshold calibration (validation.calibration): subject bootstrap, unresolvable FARs, held-out split."""

import numpy as np
import pytest

from validation.calibration import PairScores, bootstrap, calibrate, split_halves, threshold_at_far


def constructed(seed=0, identities=20, per_identity=50):
    """20 identities x 50 genuine pairs with a per-identity score offset, plus impostor pairs between identities
    whose scores carry both sides' offsets: pairs of one identity are strongly correlated."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(0, 0.15, identities)
    g_subj = np.repeat(np.arange(identities), per_identity)
    gen = 0.6 + offset[g_subj] + rng.normal(0, 0.03, len(g_subj))
    a = rng.integers(0, identities, 20000)
    b = (a + rng.integers(1, identities, 20000)) % identities
    imp = 0.1 + 0.5 * (offset[a] + offset[b]) + rng.normal(0, 0.03, len(a))
    scores = np.r_[gen, imp]
    labels = np.r_[np.ones(len(gen), bool), np.zeros(len(imp), bool)]
    return PairScores("constructed", scores, labels, np.r_[g_subj, a], np.r_[g_subj, b], source="test")


def test_identity_interval_at_least_twice_the_pair_interval():
    with_ids = constructed()
    independent = PairScores("independent", with_ids.scores, with_ids.labels, source="test")  # same marginals
    ci = {}
    for pairs in (with_ids, independent):
        res = calibrate(pairs, fars=[1e-2], replicates=300, seed=1, heldout=False)
        entry = res["entries"][0]
        ci[res["bootstrap"]] = (np.diff(entry["threshold_interval"])[0], np.diff(entry["frr_interval"])[0])
    assert set(ci) == {"subjects", "pairs"}
    assert ci["subjects"][0] >= 2 * ci["pairs"][0]  # threshold interval
    assert ci["subjects"][1] >= 2 * ci["pairs"][1]  # FRR interval


def test_unresolvable_far_is_null_with_the_count_it_needs():
    rng = np.random.default_rng(0)
    pairs = PairScores("small", rng.normal(size=2000), np.r_[np.ones(500, bool), np.zeros(1500, bool)], source="t")
    res = calibrate(pairs, fars=[1e-2, 1e-3], replicates=20)
    resolved, unresolved = res["entries"]
    lo, hi = resolved["threshold_interval"]
    assert (pairs.scores[~pairs.labels] > resolved["threshold"]).mean() <= 1e-2 and lo < resolved["threshold"] < hi
    assert unresolved["threshold"] is None and unresolved["needed_impostors"] == 3000
    assert "threshold_interval" not in unresolved


def test_point_threshold_and_rates():
    imp = np.arange(1000, dtype=np.float32)[::-1] / 1000  # 0.999 ... 0
    assert threshold_at_far(imp, 1e-2) == pytest.approx(0.989)  # 10 impostors above it
    assert threshold_at_far(imp, 1e-3) is None  # needs 3000


def test_tail_shortcut_equals_every_impostor():
    """A replicate weighs only the top of the sorted impostors; forcing the fallback over all of them (tiny tail)
    gives the same thresholds and FRRs."""
    pairs = constructed()
    fast = bootstrap(pairs, fars=[1e-2, 1e-3], replicates=30, seed=3)
    full = bootstrap(pairs, fars=[1e-2, 1e-3], replicates=30, seed=3, tail_margin=0, min_tail=5)
    np.testing.assert_array_equal(fast["thresholds"], full["thresholds"])
    np.testing.assert_array_equal(fast["frr"], full["frr"])
    assert np.isfinite(fast["thresholds"][:, 0]).all()


def test_split_by_subject_keeps_subjects_apart():
    pairs = constructed()
    calib, held = split_halves(pairs, seed=0)
    ids_c = set(calib.subject_a) | set(calib.subject_b)
    ids_h = set(held.subject_a) | set(held.subject_b)
    assert ids_c and ids_h and not ids_c & ids_h
    assert split_halves(pairs, seed=0)[0].scores.tolist() == calib.scores.tolist()  # seeded


def test_non_finite_scores_fail_naming_the_source():
    with pytest.raises(ValueError, match="ijbb.*non-finite"):
        PairScores("ijbb", [0.1, np.nan], [True, False])
