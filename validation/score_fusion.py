"""Score-level fusion of several models on the same pairs
(docs/evaluation.md, "Threshold calibration, error-versus-discard, score fusion").

Each member's scores are z-normalised with the mean and standard deviation of its impostor scores on the
calibration half only; the fused score is the weighted sum of the z-scores, given weights or weights fitted by
logistic regression (scikit-learn) on the calibration half. It is mapped back onto the first member's score scale,
`mu_1 + sd_1 * sum(w_i z_i) / sum(w_i)`, in float64 and rounded to float32: with weights (1, 0, ...) that returns
the first member's scores exactly, and its thresholds with them.
(Not the flip fusion of `validation.flip_fusion`, which fuses the embeddings of one image and its mirror.)
"""

from __future__ import annotations

import numpy as np

from validation.calibration import PairScores


def impostor_stats(scores: np.ndarray, labels: np.ndarray, calibration: np.ndarray) -> tuple[float, float]:
    """(mean, std) of the impostor scores of the calibration half."""
    imp = np.asarray(scores, dtype=np.float64)[calibration & ~labels]
    if len(imp) < 2:
        raise ValueError(f"z-normalisation needs >= 2 impostor pairs in the calibration half, got {len(imp)}")
    sd = float(imp.std())
    if sd == 0:
        raise ValueError("z-normalisation: the impostor scores of the calibration half are all equal")
    return float(imp.mean()), sd


def fit_weights(z: np.ndarray, labels: np.ndarray, calibration: np.ndarray, seed: int = 0) -> np.ndarray:
    """Logistic-regression weights of the members' z-scores [n, k] on the calibration half, scaled to sum 1."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(class_weight="balanced", random_state=seed, max_iter=1000)
    model.fit(z[calibration], labels[calibration])
    w = model.coef_.reshape(-1).astype(np.float64)
    if w.sum() <= 0:
        raise ValueError(f"logistic regression gave weights {w.tolist()} summing to <= 0; give ensemble.weights")
    return w / w.sum()


def fuse_scores(members: list[PairScores], calibration: np.ndarray, weights=None, seed: int = 0
                ) -> tuple[PairScores, dict]:
    """Fused PairScores of members scored on the same pairs, and {weights, znorm [[mean, std] per member],
    fitted}. `calibration`: boolean mask of the calibration half."""
    if not members:
        raise ValueError("score fusion needs at least one member")
    labels = members[0].labels
    for m in members[1:]:
        if len(m.scores) != len(labels) or not np.array_equal(m.labels, labels):
            raise ValueError(f"fusion members {members[0].name!r} and {m.name!r} were not scored on the same pairs")
    stats = [impostor_stats(m.scores, labels, calibration) for m in members]
    z = np.stack([(m.scores.astype(np.float64) - mu) / sd for m, (mu, sd) in zip(members, stats, strict=True)], 1)
    fitted = weights is None
    if fitted:
        w = fit_weights(z, labels, calibration, seed)
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if len(w) != len(members):
            raise ValueError(f"{len(w)} fusion weights for {len(members)} members")
        if w.sum() <= 0:
            raise ValueError(f"fusion weights {w.tolist()} must sum to > 0")
    mu0, sd0 = stats[0]
    fused = (mu0 + sd0 * (z @ w) / w.sum()).astype(np.float32)
    info = {"weights": w.tolist(), "fitted": fitted, "znorm": [list(s) for s in stats]}
    return members[0].with_scores(fused, "fusion"), info
