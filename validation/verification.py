"""10-fold verification accuracy of the high-quality pair sets (LFW, CFP-FP, AgeDB-30, CALFW, CPLFW).

The rule (docs/evaluation.md, "10-fold verification on the InsightFace `.bin` sets"): pair k = rows 2k, 2k+1;
`dist = sum((e1 - e2)**2)` in the embeddings' own dtype; thresholds `np.arange(0, 4, 0.01)` (float64); 10 contiguous
folds; on the 9 training folds take the first threshold with the highest accuracy; predict "same" iff
`dist < threshold`; report the held-out fold accuracies.

`evaluate` counts, for every threshold at once, how many distances fall below it (a searchsorted on the sorted fold
distances) instead of re-thresholding the whole array 400 x 10 x 2 times; integer counts make the first-maximum
choice and every ratio identical to the loop (`evaluate_loop`, kept as the readable reference).
"""

import numpy as np

THRESHOLDS = np.arange(0, 4, 0.01)


def fold_bounds(n: int, nrof_folds: int) -> list[tuple[int, int]]:
    """Contiguous folds as sklearn's KFold(shuffle=False): the first n % k folds get one extra item."""
    if nrof_folds < 2 or n < nrof_folds:
        raise ValueError(f"need at least {nrof_folds} >= 2 pairs for {nrof_folds} folds, got {n}")
    sizes = np.full(nrof_folds, n // nrof_folds, dtype=np.int64)
    sizes[: n % nrof_folds] += 1
    ends = np.cumsum(sizes)
    return [(int(e - s), int(e)) for s, e in zip(sizes, ends)]


def pair_distances(embeddings: np.ndarray) -> np.ndarray:
    """Squared L2 distance of pairs (2k, 2k+1), computed exactly as the reference does (own dtype)."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] % 2:
        raise ValueError(f"embeddings must be [2N, D] (pairs 2k, 2k+1), got shape {embeddings.shape}")
    diff = np.subtract(embeddings[0::2], embeddings[1::2])
    return np.sum(np.square(diff), 1)


def _counts_below(dist: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold, the number of distances strictly below it (dist upcast to float64 exactly)."""
    return np.searchsorted(np.sort(dist.astype(np.float64)), thresholds, side="left")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float64, 0 where den == 0 (the reference's convention)."""
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num.astype(np.float64), den.astype(np.float64), out=out, where=np.asarray(den) != 0)
    return out


def _pairs_and_folds(embeddings, actual_issame, nrof_folds: int):
    """Pair distances, labels (both cut to the shorter) and the contiguous fold bounds."""
    dist = pair_distances(embeddings)
    issame = np.asarray(actual_issame, dtype=bool)
    n = min(len(issame), len(dist))
    return dist[:n], issame[:n], fold_bounds(n, nrof_folds)


def evaluate(embeddings: np.ndarray, actual_issame, nrof_folds: int = 10):
    """Vectorised 10-fold evaluation -> (tpr [T], fpr [T], accuracy [folds], best_thresholds [folds])."""
    dist, issame, folds = _pairs_and_folds(embeddings, actual_issame, nrof_folds)
    thresholds = THRESHOLDS

    # per fold and threshold: positives predicted same (tp) and negatives predicted same (fp)
    tp = np.stack([_counts_below(dist[a:b][issame[a:b]], thresholds) for a, b in folds])
    fp = np.stack([_counts_below(dist[a:b][~issame[a:b]], thresholds) for a, b in folds])
    pos = np.array([issame[a:b].sum() for a, b in folds])
    neg = np.array([b - a for a, b in folds]) - pos

    # accuracy * size on the other folds = tp + tn over the training folds (integer, so argmax is exact)
    train_correct = (tp.sum(0) - tp) + ((neg.sum() - neg)[:, None] - (fp.sum(0) - fp))
    best = np.argmax(train_correct, axis=1)  # first maximum = smallest threshold

    tprs = _ratio(tp, pos[:, None])
    fprs = _ratio(fp, neg[:, None])
    rows = np.arange(len(folds))
    test_correct = tp[rows, best] + neg - fp[rows, best]
    accuracy = test_correct.astype(np.float64) / np.array([b - a for a, b in folds], dtype=np.float64)
    return np.mean(tprs, 0), np.mean(fprs, 0), accuracy, thresholds[best]


def _accuracy_at(threshold, dist, issame):
    predict = np.less(dist, threshold)
    tp = np.sum(predict & issame)
    fp = np.sum(predict & ~issame)
    tn = np.sum(~predict & ~issame)
    fn = np.sum(~predict & issame)
    tpr = 0.0 if tp + fn == 0 else float(tp) / float(tp + fn)
    fpr = 0.0 if fp + tn == 0 else float(fp) / float(fp + tn)
    return tpr, fpr, float(tp + tn) / dist.size


def evaluate_loop(embeddings: np.ndarray, actual_issame, nrof_folds: int = 10):
    """Plain loop over folds and thresholds: the rule written out, for tests and the benchmark."""
    dist, issame, folds = _pairs_and_folds(embeddings, actual_issame, nrof_folds)
    thresholds = THRESHOLDS
    tprs = np.zeros((nrof_folds, len(thresholds)))
    fprs = np.zeros((nrof_folds, len(thresholds)))
    accuracy = np.zeros(nrof_folds)
    best_thresholds = np.zeros(nrof_folds)
    indices = np.arange(len(dist))
    for f, (a, b) in enumerate(folds):
        test = indices[a:b]
        train = np.concatenate([indices[:a], indices[b:]])
        acc_train = np.zeros(len(thresholds))
        for t, threshold in enumerate(thresholds):
            _, _, acc_train[t] = _accuracy_at(threshold, dist[train], issame[train])
        best = np.argmax(acc_train)
        for t, threshold in enumerate(thresholds):
            tprs[f, t], fprs[f, t], _ = _accuracy_at(threshold, dist[test], issame[test])
        _, _, accuracy[f] = _accuracy_at(thresholds[best], dist[test], issame[test])
        best_thresholds[f] = thresholds[best]
    return np.mean(tprs, 0), np.mean(fprs, 0), accuracy, best_thresholds


def verification_accuracy(embeddings: np.ndarray, actual_issame, nrof_folds: int = 10) -> float:
    """Mean 10-fold accuracy in percent."""
    _, _, accuracy, _ = evaluate(embeddings, actual_issame, nrof_folds)
    return float(accuracy.mean() * 100.0)
