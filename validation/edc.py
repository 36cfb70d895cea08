"""Error-versus-discard characteristic (EDC, ISO/IEC 29794-1;
docs/evaluation.md, "Threshold calibration, error-versus-discard, score fusion").

Genuine comparisons are ordered by comparison quality (the lower of the two sides' qualities: the feature norm of
an image, the mean norm of a template's images); the FNMR at a fixed decision threshold is recomputed as the
lowest-quality fraction of them is discarded. A useful quality measure makes the curve fall faster than discarding
at random (whose expected FNMR stays at the starting value). The partial area under the curve up to `max_discard`
(lower = better) summarises it.
"""

from __future__ import annotations

import numpy as np

from validation.calibration import PairScores


def _fnmr_after_discard(errors_in_order: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """FNMR of what is left after dropping the first `counts[i]` comparisons of the ordering."""
    n = len(errors_in_order)
    suffix = np.r_[np.cumsum(errors_in_order[::-1])[::-1], 0]  # errors at positions >= k
    left = n - counts
    return np.divide(suffix[counts], left, out=np.full(len(counts), np.nan), where=left > 0)


def edc(pairs: PairScores, threshold: float, max_discard: float = 0.2, steps: int = 41, target_fnmr: float = 0.01,
        random_repeats: int = 50, seed: int = 0) -> dict:
    """EDC of the genuine pairs at `threshold` -> JSON-ready dict: discarded fractions, FNMR by quality and by random
    discard, partial areas up to `max_discard`, and the quality threshold (lowest kept comparison quality) at which
    the FNMR first meets `target_fnmr` (null, with a note, when no discard up to `max_discard` meets it)."""
    quality = pairs.quality
    if quality is None:
        raise ValueError(f"{pairs.name}: the protocol gives no image qualities, so no EDC")
    gen = pairs.labels
    scores, q = pairs.scores[gen], np.asarray(quality[gen], dtype=np.float64)
    n = len(scores)
    if n == 0:
        raise ValueError(f"{pairs.name}: no genuine pairs, so no EDC")
    if not np.isfinite(q).all():
        raise ValueError(f"{pairs.name}: non-finite comparison qualities")
    errors = (scores <= threshold).astype(np.float64)
    order = np.argsort(q, kind="stable")  # lowest quality first
    fractions = np.linspace(0.0, max_discard, steps)
    counts = np.minimum(np.round(fractions * n).astype(np.int64), n - 1)
    by_quality = _fnmr_after_discard(errors[order], counts)
    rng = np.random.default_rng(seed)
    by_random = np.mean([_fnmr_after_discard(errors[rng.permutation(n)], counts) for _ in range(random_repeats)], 0)

    # the quality threshold: the first discard (of at most max_discard) that brings the FNMR to the target
    counts_all = np.arange(min(n - 1, int(np.floor(max_discard * n))) + 1)
    curve = _fnmr_after_discard(errors[order], counts_all)
    meets = np.flatnonzero(curve <= target_fnmr)
    quality_threshold, note = None, None
    if len(meets):
        k = int(meets[0])
        quality_threshold = {"quality": float(q[order][k]), "discarded_fraction": float(k / n),
                             "fnmr": float(curve[k])}
    else:
        note = (f"FNMR {target_fnmr:g} is not reached by discarding up to {max_discard:.0%} of the comparisons "
                f"(lowest FNMR there {np.nanmin(curve):.4f})")
    return {
        "threshold": float(threshold), "genuines": int(n), "max_discard": float(max_discard),
        "fractions": fractions.tolist(), "fnmr_quality": by_quality.tolist(), "fnmr_random": by_random.tolist(),
        "pauc_quality": float(np.trapezoid(by_quality, fractions)),
        "pauc_random": float(np.trapezoid(by_random, fractions)),
        "target_fnmr": float(target_fnmr), "quality_threshold": quality_threshold, "quality_threshold_note": note,
    }
