"""Decision thresholds calibrated to target FARs, with bootstrap intervals that resample subjects
(docs/evaluation.md, "Threshold calibration, error-versus-discard, score fusion").

Scores are similarities (higher = more alike); a pair is accepted as a match when `score > threshold`. At a target
FAR f over N impostors the threshold is the impostor score of rank floor(f * N) counted from the top, so at most
f * N impostors lie above it. A FAR needs at least `MIN_IMPOSTORS_PER_FAR / f` impostors; below that the entry has
a null threshold and the count it would need.

Bootstrap (identities, not pairs: the pairs of one subject are correlated): a replicate draws the S subjects with
replacement (multiplicities m = a multinomial draw), and a pair (a, b) weighs m[a] * m[b]. The threshold of a
replicate is the weighted upper quantile of the impostor scores, the FRR the weighted share of genuine scores at or
below it; percentile intervals over B replicates. Sets without identities fall back to a pair bootstrap (genuine
and impostor pairs drawn with replacement, each on its own), marked `pair_bootstrap` in the result.

Scale (IJB-B: 8M pairs): the scores are sorted once; thresholds at FAR <= `max(fars)` only depend on the top of the
sorted impostors, so a replicate weighs only that tail (the rest enters through its total weight, m^T C m with C the
subject-pair count matrix, one matrix product for a chunk of replicates). A replicate whose tail does not hold enough
weight is redone over every impostor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_FARS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
MIN_IMPOSTORS_PER_FAR = 3


@dataclass
class PairScores:
    """The scored pairs of one protocol.

    scores float32 [n]; labels bool [n] (True = genuine); subject_a / subject_b: the subject of each side (int), or
    None when the protocol has no identities (pair bootstrap); quality_a / quality_b: the quality of each side
    (feature norm) or None; `source` says where pairs and subjects come from.
    """

    name: str
    scores: np.ndarray
    labels: np.ndarray
    subject_a: np.ndarray | None = None
    subject_b: np.ndarray | None = None
    quality_a: np.ndarray | None = None
    quality_b: np.ndarray | None = None
    source: str = ""

    def __post_init__(self):
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        self.labels = np.asarray(self.labels).astype(bool).reshape(-1)
        n = len(self.scores)
        if len(self.labels) != n:
            raise ValueError(f"{self.name}: {n} scores but {len(self.labels)} labels")
        bad = ~np.isfinite(self.scores)
        if bad.any():
            raise ValueError(f"{self.name}: {int(bad.sum())} non-finite pair scores (first at pair "
                             f"{int(np.flatnonzero(bad)[0])}); the model or its embeddings are broken")
        for what in ("subject_a", "subject_b", "quality_a", "quality_b"):
            value = getattr(self, what)
            if value is not None:
                value = np.asarray(value).reshape(-1)
                if len(value) != n:
                    raise ValueError(f"{self.name}: {what} has {len(value)} values for {n} pairs")
                setattr(self, what, value)
        if (self.subject_a is None) != (self.subject_b is None):
            raise ValueError(f"{self.name}: give both subject_a and subject_b, or neither")

    @property
    def has_subjects(self) -> bool:
        return self.subject_a is not None

    @property
    def quality(self) -> np.ndarray | None:
        """Comparison quality: the lower of the two sides."""
        if self.quality_a is None or self.quality_b is None:
            return None
        return np.minimum(self.quality_a, self.quality_b)

    def subset(self, mask: np.ndarray, name: str | None = None) -> PairScores:
        def take(a):
            return None if a is None else a[mask]

        return PairScores(name or self.name, self.scores[mask], self.labels[mask], take(self.subject_a),
                          take(self.subject_b), take(self.quality_a), take(self.quality_b), self.source)

    def with_scores(self, scores: np.ndarray, name: str) -> PairScores:
        """Same pairs, subjects and qualities, other scores (a fused system)."""
        return PairScores(name, scores, self.labels, self.subject_a, self.subject_b, self.quality_a, self.quality_b,
                          self.source)


# ------------------------------------------------------------------------------------------------ point estimates
def needed_impostors(far: float) -> int:
    return int(math.ceil(MIN_IMPOSTORS_PER_FAR / far - 1e-9))


def threshold_at_far(impostors_desc: np.ndarray, far: float) -> float | None:
    """Threshold of a target FAR from impostor scores sorted high to low; None if they cannot resolve it."""
    n = len(impostors_desc)
    if n < needed_impostors(far):
        return None
    return float(impostors_desc[int(math.floor(far * n))])


def rates_at(scores: PairScores | tuple, threshold: float) -> tuple[float, float]:
    """(FAR, FRR) at a threshold: impostors above it, genuine pairs at or below it."""
    s, lab = (scores.scores, scores.labels) if isinstance(scores, PairScores) else scores
    imp, gen = s[~lab], s[lab]
    far = float(np.mean(imp > threshold)) if len(imp) else float("nan")
    frr = float(np.mean(gen <= threshold)) if len(gen) else float("nan")
    return far, frr


# ------------------------------------------------------------------------------------------------ bootstrap
def _subject_index(pairs: PairScores) -> tuple[np.ndarray, np.ndarray, int]:
    """Subjects renumbered 0..S-1 (a lookup table for compact integer ids, no sort of 2n values)."""
    a, b = pairs.subject_a, pairs.subject_b
    if len(a) == 0:
        return a.astype(np.int32), b.astype(np.int32), 0
    lo = int(min(a.min(), b.min()))
    span = int(max(a.max(), b.max())) - lo + 1
    if np.issubdtype(a.dtype, np.integer) and span <= max(1 << 24, 4 * len(a)):
        present = np.zeros(span, dtype=bool)
        present[a - lo] = True
        present[b - lo] = True
        lookup = (np.cumsum(present) - 1).astype(np.int32)
        return lookup[a - lo], lookup[b - lo], int(present.sum())
    uniq, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    return inv[: len(a)].astype(np.int32), inv[len(a):].astype(np.int32), len(uniq)


def _pair_total(a: np.ndarray, b: np.ndarray, n_subjects: int):
    """Callable M [R, S] -> total weight of the pairs (a, b) per replicate, sum_i M[a_i] * M[b_i] = m^T C m, with C
    the subject-pair count matrix (dense up to 4,096 subjects, sparse beyond)."""
    from scipy import sparse

    if n_subjects <= 4096:
        dense = np.bincount(a.astype(np.int64) * n_subjects + b, minlength=n_subjects * n_subjects)
        dense = dense.reshape(n_subjects, n_subjects).astype(np.float32)
        return lambda m: np.einsum("rs,rs->r", m @ dense, m, dtype=np.float64)
    c = sparse.csr_matrix((np.ones(len(a), np.float32), (a, b)), shape=(n_subjects, n_subjects))  # sums repeats
    return lambda m: np.einsum("rs,rs->r", np.asarray((c.T @ m.T).T), m, dtype=np.float64)


def bootstrap(pairs: PairScores, fars=DEFAULT_FARS, replicates: int = 1000, seed: int = 0, chunk: int = 50,
              tail_margin: float = 3.0, min_tail: int = 2048) -> dict:
    """Bootstrap replicates of the threshold and the FRR at each FAR.

    Returns {"thresholds": [B, F] (NaN where a replicate cannot resolve the FAR), "frr": [B, F],
    "method": "subjects" | "pairs", "subjects": S}. Memory O(chunk * tail + pairs); time O(B * tail).
    """
    fars = np.asarray(fars, dtype=np.float64)
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    lab = pairs.labels
    imp_scores = pairs.scores[~lab]
    gen_scores = pairs.scores[lab]
    order = np.argsort(-imp_scores)
    imp_desc = imp_scores[order]
    gorder = np.argsort(gen_scores)
    gen_asc = gen_scores[gorder]
    n_imp, n_gen = len(imp_desc), len(gen_asc)
    rng = np.random.default_rng(seed)

    if pairs.has_subjects:
        sa, sb, n_subj = _subject_index(pairs)
        ia, ib = sa[~lab][order], sb[~lab][order]
        ga, gb = sa[lab][gorder], sb[lab][gorder]
        total_imp = _pair_total(ia, ib, n_subj)
        method = "subjects"
    else:  # stratified pair bootstrap: every pair its own unit
        ia = ib = np.arange(n_imp, dtype=np.int32)
        ga = gb = np.arange(n_gen, dtype=np.int32)
        n_subj = 0
        method = "pairs"
    del imp_scores, gen_scores

    tail = int(min(n_imp, math.ceil(tail_margin * fars.max() * n_imp) + min_tail))
    ta, tb = ia[:tail], ib[:tail]
    out_t = np.full((replicates, len(fars)), np.nan)
    out_frr = np.full((replicates, len(fars)), np.nan)
    for start in range(0, replicates, chunk):
        r = min(chunk, replicates - start)
        if method == "subjects":
            m = rng.multinomial(n_subj, np.full(n_subj, 1.0 / n_subj), size=r).astype(np.float32)
            w_total = total_imp(m)
            wt = m[:, ta]
            wt *= m[:, tb]
            wg = m[:, ga] * m[:, gb]
        else:
            m_imp = rng.multinomial(n_imp, np.full(n_imp, 1.0 / n_imp), size=r).astype(np.float32) if n_imp else \
                np.zeros((r, 0), np.float32)
            w_total = np.full(r, float(n_imp))
            wt = m_imp[:, :tail]
            wg = rng.multinomial(n_gen, np.full(n_gen, 1.0 / n_gen), size=r).astype(np.float32) if n_gen else \
                np.zeros((r, 0), np.float32)
        # integer weights: float32 sums are exact below 2**24, which a tail of up to 4M pairs stays under
        cum = np.cumsum(wt, axis=1, dtype=np.float32 if tail <= 1 << 22 else np.float64) if tail else \
            np.zeros((r, 0))
        cum_g = np.cumsum(wg, axis=1, dtype=np.float64)
        thresholds = np.full((r, len(fars)), np.nan)
        for i in range(r):
            budget = fars * w_total[i]
            resolvable = w_total[i] >= MIN_IMPOSTORS_PER_FAR / fars  # weighted impostor count, as the point rule
            k = np.searchsorted(cum[i], budget, side="right")
            if (k >= tail).any() and tail < n_imp:  # the tail holds too little weight: use every impostor
                if method == "subjects":
                    full = np.cumsum(m[i, ia].astype(np.float64) * m[i, ib])
                else:
                    full = np.cumsum(m_imp[i].astype(np.float64))
                k = np.searchsorted(full, budget, side="right")
            ok = resolvable & (k < n_imp)
            thresholds[i, ok] = imp_desc[k[ok]]
        out_t[start:start + r] = thresholds
        if n_gen:
            j = np.searchsorted(gen_asc, np.nan_to_num(thresholds, nan=-np.inf), side="right")  # genuine <= t
            below = np.where(j > 0, np.take_along_axis(cum_g, np.maximum(j - 1, 0), axis=1), 0.0)
            g_total = cum_g[:, -1:]
            frr = np.divide(below, g_total, out=np.full_like(below, np.nan), where=g_total > 0)
            frr[np.isnan(thresholds)] = np.nan
            out_frr[start:start + r] = frr
    return {"thresholds": out_t, "frr": out_frr, "method": method, "subjects": int(n_subj)}


def percentile_interval(values: np.ndarray, confidence: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return None
    lo, hi = np.percentile(values, [50 * (1 - confidence), 50 * (1 + confidence)])
    return [float(lo), float(hi)]


# ------------------------------------------------------------------------------------------------ held-out split
def split_masks(pairs: PairScores, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded 50/50 split by subject (pairs whose two subjects fall in different halves belong to neither); by pair
    when the protocol has no identities. Returns boolean masks (calibration half, held-out half)."""
    rng = np.random.default_rng(seed)
    if pairs.has_subjects:
        subjects = np.unique(np.concatenate([pairs.subject_a, pairs.subject_b]))
        first = rng.permutation(subjects)[: len(subjects) // 2]
        in_a, in_b = np.isin(pairs.subject_a, first), np.isin(pairs.subject_b, first)
        return in_a & in_b, ~in_a & ~in_b
    calib = rng.permutation(len(pairs.scores)) < len(pairs.scores) // 2
    return calib, ~calib


def split_halves(pairs: PairScores, seed: int = 0) -> tuple[PairScores, PairScores]:
    """(calibration half, held-out half) of `split_masks`."""
    calib, held = split_masks(pairs, seed)
    return pairs.subset(calib, f"{pairs.name} (calibration half)"), pairs.subset(held, f"{pairs.name} (held-out half)")


def subsample_subjects(pairs: PairScores, fraction: float, seed: int = 0) -> PairScores:
    """The pairs among a seeded random `fraction` of the subjects (of the pairs, without identities): fewer pairs
    of the same kind, to see how the intervals widen."""
    if fraction >= 1:
        return pairs
    rng = np.random.default_rng(seed + 1)
    if pairs.has_subjects:
        subjects = np.unique(np.concatenate([pairs.subject_a, pairs.subject_b]))
        keep = rng.permutation(subjects)[: max(2, int(round(fraction * len(subjects))))]
        mask = np.isin(pairs.subject_a, keep) & np.isin(pairs.subject_b, keep)
    else:
        mask = rng.random(len(pairs.scores)) < fraction
    return pairs.subset(mask)


# ------------------------------------------------------------------------------------------------ one protocol
def calibrate(pairs: PairScores, fars=DEFAULT_FARS, replicates: int = 1000, confidence: float = 0.95, seed: int = 0,
              heldout: bool = True) -> dict:
    """Thresholds, FRR and intervals at each FAR, plus the held-out check -> a JSON-ready dict."""
    fars = [float(f) for f in fars]
    imp_desc = np.sort(pairs.scores[~pairs.labels])[::-1]
    n_imp, n_gen = int(len(imp_desc)), int(pairs.labels.sum())
    boot = bootstrap(pairs, fars, replicates, seed) if replicates else None
    halves = split_halves(pairs, seed) if heldout else None
    half_imp = np.sort(halves[0].scores[~halves[0].labels])[::-1] if halves else None
    entries = []
    for f_idx, far in enumerate(fars):
        threshold = threshold_at_far(imp_desc, far)
        entry = {"far": far, "threshold": threshold, "impostors": n_imp, "genuines": n_gen}
        if threshold is None:
            entry["needed_impostors"] = needed_impostors(far)
            entry["note"] = f"{n_imp} impostor pairs cannot resolve FAR {far:g}: it needs >= {needed_impostors(far)}"
        else:
            entry["frr"] = rates_at(pairs, threshold)[1]
            if boot is not None:
                entry["threshold_interval"] = percentile_interval(boot["thresholds"][:, f_idx], confidence)
                entry["frr_interval"] = percentile_interval(boot["frr"][:, f_idx], confidence)
        if halves is not None:
            t_half = threshold_at_far(half_imp, far)
            held = {"calibration_pairs": len(halves[0].scores), "heldout_pairs": len(halves[1].scores),
                    "calibration_impostors": len(half_imp), "heldout_impostors": int((~halves[1].labels).sum()),
                    "threshold": t_half}
            if t_half is None:
                held["needed_impostors"] = needed_impostors(far)
            else:
                held["far"], held["frr"] = rates_at(halves[1], t_half)
            entry["heldout"] = held
        entries.append(entry)
    return {"pair_source": pairs.source, "bootstrap": None if boot is None else boot["method"],
            "subjects": None if boot is None else boot["subjects"], "replicates": int(replicates),
            "confidence": float(confidence), "pairs": len(pairs.scores), "impostors": n_imp, "genuines": n_gen,
            "entries": entries}
