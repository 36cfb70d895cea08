"""Closed-set identification: CMC rank-k (TinyFace, with distractors) and SCface rank-1 per distance.

Scores are inner products of unit embeddings. The gallery is scored in chunks with a running top-k, so a 3,728 x 158k
score matrix (2.35 GB in float32) never exists. Ties are broken by the lower gallery index, in the chunked and
the one-shot computation alike.
"""

import numpy as np

DEFAULT_CHUNK = 8192


def _sorted_topk(scores: np.ndarray, index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sort the columns of small (scores, index) arrays: highest score first, then lowest index; keep k."""
    order = np.lexsort((index, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(index, order, 1)


def _chunk_topk(scores: np.ndarray, start: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k columns of one score chunk (ties at the k-th score resolved by the lower index), as global indices."""
    n_rows, n_cols = scores.shape
    if n_cols <= k:
        return _sorted_topk(scores, np.broadcast_to(np.arange(start, start + n_cols), scores.shape), k)
    cols = np.argpartition(scores, n_cols - k, axis=1)[:, n_cols - k:]
    top = np.take_along_axis(scores, cols, 1)
    # argpartition splits a tie at the k-th score arbitrarily: redo those (rare) rows with a full stable sort
    tied = np.flatnonzero((scores >= top.min(1, keepdims=True)).sum(1) > k)
    for r in tied:
        cols[r] = np.lexsort((np.arange(n_cols), -scores[r]))[:k]
        top[r] = scores[r, cols[r]]
    return top, cols + start


def topk_gallery(probe: np.ndarray, gallery: np.ndarray, k: int, chunk_size: int = DEFAULT_CHUNK):
    """Top-k gallery items per probe by inner product -> (scores [P, k'], indices [P, k']), k' = min(k, G)."""
    probe = np.asarray(probe, dtype=np.float32)
    gallery = np.asarray(gallery, dtype=np.float32)
    if probe.shape[1] != gallery.shape[1]:
        raise ValueError(f"probe dim {probe.shape[1]} != gallery dim {gallery.shape[1]}")
    n_probe, n_gal = probe.shape[0], gallery.shape[0]
    k = min(k, n_gal)
    best_s = np.empty((n_probe, 0), dtype=np.float32)
    best_i = np.empty((n_probe, 0), dtype=np.int64)
    for start in range(0, n_gal, chunk_size):
        chunk_s, chunk_i = _chunk_topk(probe @ gallery[start:start + chunk_size].T, start, k)
        best_s, best_i = _sorted_topk(np.concatenate([best_s, chunk_s], 1), np.concatenate([best_i, chunk_i], 1), k)
    return best_s, best_i


def cmc(probe: np.ndarray, probe_labels, gallery: np.ndarray, gallery_labels, ranks=(1, 5, 20),
        chunk_size: int = DEFAULT_CHUNK) -> dict[int, float]:
    """Closed-set CMC in percent: probe i succeeds at rank k iff a mate (same label) is among its k best gallery items.

    Only probes with at least one mate in the gallery are scored. Gallery label -1 (distractor) never mates.
    """
    probe_labels = np.asarray(probe_labels)
    gallery_labels = np.asarray(gallery_labels)
    has_mate = np.isin(probe_labels, gallery_labels[gallery_labels >= 0]) & (probe_labels >= 0)
    if not has_mate.any():
        raise ValueError("no probe has a mate in the gallery")
    probe = np.asarray(probe)[has_mate]
    probe_labels = probe_labels[has_mate]
    _, top = topk_gallery(probe, gallery, max(ranks), chunk_size)
    hit = gallery_labels[top] == probe_labels[:, None]  # [P, k]
    first_hit = np.where(hit.any(1), hit.argmax(1), np.iinfo(np.int64).max)
    return {r: float(np.mean(first_hit < r) * 100.0) for r in ranks}


def tinyface_metrics(emb: np.ndarray, labels, split, ranks=(1, 5, 20), chunk_size: int = DEFAULT_CHUNK,
                     prefix: str = "tinyface"):
    """TinyFace: probes vs gallery_match + gallery_distractor -> {'<prefix>/rank_k': percent}."""
    split = np.asarray(split).astype(str)
    labels = np.asarray(labels)
    probe = split == "probe"
    gallery = np.isin(split, ["gallery_match", "gallery_distractor"])
    gal_labels = np.where(split[gallery] == "gallery_distractor", -1, labels[gallery])
    res = cmc(emb[probe], labels[probe], emb[gallery], gal_labels, ranks, chunk_size)
    return {f"{prefix}/rank_{r}": v for r, v in res.items()}


def scface_metrics(emb: np.ndarray, labels, split, distance, prefix: str = "scface") -> dict[str, float]:
    """SCface: rank-1 of the probes of each distance (1, 2, 3) against the frontal gallery -> {'<prefix>/dK': %}."""
    split = np.asarray(split).astype(str)
    labels = np.asarray(labels)
    distance = np.asarray(distance).astype(int)
    gallery = split == "gallery"
    out = {}
    for d in (1, 2, 3):
        probe = (split == "probe") & (distance == d)
        if probe.any():
            out[f"{prefix}/d{d}"] = cmc(emb[probe], labels[probe], emb[gallery], labels[gallery], (1,))[1]
    return out
