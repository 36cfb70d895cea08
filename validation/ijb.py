"""IJB-B / IJB-C template-based 1:1 verification, and optional 1:N identification
(docs/evaluation.md, "IJB-B / IJB-C template verification").

Pipeline: image features -> media pooling (mean per media id within a template) -> template feature (sum of its
media features, L2-normalised) -> pair score (dot product) -> ROC -> TAR at the ROC point whose FPR is nearest each
target FAR (ties: highest TPR).

Scale choices (IJB-B: 227,630 images, 12,115 templates, 8,010,270 pairs; IJB-C about twice that):
- pooling is one sparse (templates x images) matrix product: no per-template Python loop, no copy of the features;
- pair scores come from blocks of the template Gram matrix (rows of one block of first templates against all
  templates, <= ~64 MB each), read out for the pairs of that block: no pairs x 512 arrays, no per-pair row gathers;
- the ROC is computed from sorted scores without sklearn's stable argsort, and equals `sklearn.metrics.roc_curve`.
"""

from pathlib import Path

import numpy as np

from validation.flip_fusion import fuse

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
IMAGE_FEATURES = ("unit", "norm")


# ----------------------------------------------------------------------------------------------- meta-file readers
def _read_int_table(path, ncols: int) -> list[np.ndarray]:
    """Whitespace-separated integer table -> one int64 array per column (numpy's C parser: ~1 s for 8M lines)."""
    try:
        table = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise ValueError(f"{path}: expected {ncols} integer columns per line ({e})") from None
    if table.size == 0:
        table = table.reshape(0, ncols)
    if table.shape[1] != ncols:
        raise ValueError(f"{path}: expected {ncols} integer columns per line, got {table.shape[1]}")
    return [np.ascontiguousarray(table[:, c]) for c in range(ncols)]


def read_template_media_list(path) -> tuple[np.ndarray, np.ndarray]:
    """`<name> <template_id> <media_id>` per line (ijbb_face_tid_mid.txt) -> (templates, medias), int64 arrays."""
    tokens = Path(path).read_text().split()
    if len(tokens) % 3:
        raise ValueError(f"{path}: expected 3 columns 'name template_id media_id' per line")
    try:
        templates = np.array(tokens[1::3], dtype=np.int64)
        medias = np.array(tokens[2::3], dtype=np.int64)
    except ValueError as e:
        raise ValueError(f"{path}: template and media ids must be integers ({e})") from None
    return templates, medias


def read_template_pair_list(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`<tid1> <tid2> <label>` per line (ijbb_template_pair_label.txt) -> (t1, t2, label); label int8 in {0, 1}."""
    t1, t2, label = _read_int_table(path, 3)
    return t1, t2, label.astype(np.int8)


def read_1n_list(path) -> tuple[np.ndarray, np.ndarray]:
    """1:N csv (header with TEMPLATE_ID and SUBJECT_ID columns, a row per image) -> unique (templates, subjects)."""
    lines = Path(path).read_text().splitlines()
    header = [h.strip().lower() for h in lines[0].split(",")]
    try:
        ct, cs = header.index("template_id"), header.index("subject_id")
    except ValueError:
        raise ValueError(f"{path}: header must name TEMPLATE_ID and SUBJECT_ID, got {lines[0]!r}") from None
    rows = [line.split(",") for line in lines[1:] if line.strip()]
    tids = np.array([int(r[ct]) for r in rows], dtype=np.int64)
    sids = np.array([int(r[cs]) for r in rows], dtype=np.int64)
    tids, first = np.unique(tids, return_index=True)
    return tids, sids[first]


# ------------------------------------------------------------------------------------------------ features
def image_features(emb, norm, emb_flip=None, norm_flip=None, feature: str = "unit", fusion: str = "pre_norm_add",
                   faceness=None) -> np.ndarray:
    """Per-image IJB feature (float32): `unit` = fused unit embedding (QGFace's in-training IJB-B path), `norm` =
    fused un-normalised feature, e.g. f*||f|| + f_flip*||f_flip|| (AdaFace's offline script and InsightFace).
    `faceness` (detector score per image) multiplies the feature as InsightFace does; None = off (AdaFace/QGFace)."""
    if feature not in IMAGE_FEATURES:
        raise ValueError(f"unknown IJB image feature {feature!r}; choose one of {IMAGE_FEATURES}")
    unit, fused_norm = fuse(emb, norm, emb_flip, norm_flip, fusion)
    feats = np.asarray(unit, dtype=np.float32)
    if feature == "norm":
        feats = feats * np.asarray(fused_norm, dtype=np.float32)
    if faceness is not None:
        feats = feats * np.asarray(faceness, dtype=np.float32).reshape(-1, 1)
    return feats


def image2template_feature(img_feats, templates, medias) -> tuple[np.ndarray, np.ndarray]:
    """Template features: per template, the mean image feature of each media id, summed over media, L2-normalised.

    Returns (template_norm_feats [T, D] float32, unique_templates [T] sorted), row t = unique_templates[t].
    """
    from scipy import sparse  # scipy ships with scikit-learn

    img_feats = np.asarray(img_feats)
    templates = np.asarray(templates)
    medias = np.asarray(medias)
    n = img_feats.shape[0]
    if len(templates) != n or len(medias) != n:
        raise ValueError(f"{n} image features but {len(templates)} template ids and {len(medias)} media ids")
    unique_templates, t_idx = np.unique(templates, return_inverse=True)
    _, m_idx = np.unique(medias, return_inverse=True)
    # (template, media) groups; each image weighs 1 / (images of its media in its template)
    key = t_idx.astype(np.int64) * (int(m_idx.max(initial=0)) + 1) + m_idx
    _, group, group_size = np.unique(key, return_inverse=True, return_counts=True)
    weights = (1.0 / group_size[group]).astype(np.float32)
    pool = sparse.csr_matrix((weights, (t_idx, np.arange(n))), shape=(len(unique_templates), n))
    template_feats = np.asarray(pool @ img_feats.astype(np.float32, copy=False), dtype=np.float32)
    norms = np.linalg.norm(template_feats, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # as sklearn.preprocessing.normalize: an all-zero template stays zero
    return template_feats / norms, unique_templates


def template_rows(unique_templates, tids, what: str = "template") -> np.ndarray:
    """Row of each template id in `unique_templates` (sorted); raises naming the ids that are missing."""
    unique_templates = np.asarray(unique_templates)
    tids = np.asarray(tids)
    rows = np.searchsorted(unique_templates, tids)
    rows_c = np.minimum(rows, len(unique_templates) - 1)
    missing = unique_templates[rows_c] != tids
    if missing.any():
        bad = np.unique(tids[missing])
        raise KeyError(f"{len(bad)} {what} ids have no features, e.g. {bad[:5].tolist()}")
    return rows


# ------------------------------------------------------------------------------------------------ scoring
def verification(template_norm_feats, unique_templates, p1, p2, block_bytes: int = 64 << 20) -> np.ndarray:
    """Dot-product score of each template pair (p1[i], p2[i]) -> float32 [n_pairs], in pair order.

    Pairs are oriented so that row(p1) <= row(p2) (the score is symmetric) and grouped by blocks of first rows; a
    block's upper Gram rows (block x T) come from one matrix product into a reused buffer when the block has enough
    pairs to make that cheaper than gathering rows, else pair rows are gathered in small chunks. Memory stays
    O(block_bytes + n_pairs) whatever the number of pairs.
    """
    feats = np.ascontiguousarray(template_norm_feats, dtype=np.float32)
    ra = template_rows(unique_templates, p1)
    rb = template_rows(unique_templates, p2)
    r1, r2 = np.minimum(ra, rb), np.maximum(ra, rb)
    del ra, rb
    n_templates, dim = feats.shape
    rows_per_block = int(max(1, min(n_templates, block_bytes // (4 * max(n_templates, 1)))))
    n_blocks = (n_templates - 1) // rows_per_block + 1
    block = (r1 // rows_per_block).astype(np.uint16 if n_blocks < 1 << 16 else np.int64)
    order = np.argsort(block, kind="stable")  # radix sort on 16-bit keys: ~0.1 s for 8M pairs
    bounds = np.searchsorted(block[order], np.arange(n_blocks + 1))
    del block
    scores = np.empty(len(r1), dtype=np.float32)
    buffer = np.empty(rows_per_block * n_templates, dtype=np.float32)
    gather_chunk = max(1, block_bytes // (8 * dim))
    for b in range(n_blocks):
        sel = order[bounds[b]:bounds[b + 1]]
        if len(sel) == 0:
            continue
        lo, hi = b * rows_per_block, min((b + 1) * rows_per_block, n_templates)
        # a Gram block costs (hi-lo)*(T-lo)*D flops at matmul speed; a gather ~2*D scattered reads per pair
        if len(sel) * 32 >= (hi - lo) * (n_templates - lo):
            gram = buffer[: (hi - lo) * (n_templates - lo)].reshape(hi - lo, n_templates - lo)
            np.matmul(feats[lo:hi], feats[lo:].T, out=gram)
            scores[sel] = gram[r1[sel] - lo, r2[sel] - lo]
        else:
            for s in range(0, len(sel), gather_chunk):
                part = sel[s:s + gather_chunk]
                scores[part] = np.einsum("ij,ij->i", feats[r1[part]], feats[r2[part]])
    return scores


def roc_curve(labels, scores, drop_intermediate: bool = True):
    """ROC identical to `sklearn.metrics.roc_curve(labels, scores)` -> (fpr, tpr, thresholds), but from sorted
    scores (no stable argsort of 8M floats): a point per distinct score, highest first."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be 1-D of the same length")
    all_sorted = np.sort(scores)
    pos_sorted = np.sort(scores[labels])
    n = len(all_sorted)
    first = np.flatnonzero(np.r_[True, all_sorted[1:] != all_sorted[:-1]])[::-1]  # distinct values, descending
    thresholds = all_sorted[first]
    ge_all = n - first
    tps = (len(pos_sorted) - np.searchsorted(pos_sorted, thresholds, side="left")).astype(np.float64)
    fps = ge_all.astype(np.float64) - tps
    if drop_intermediate and len(fps) > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    tps = np.r_[0.0, tps]
    fps = np.r_[0.0, fps]
    thresholds = np.r_[np.inf, thresholds.astype(np.float64)]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thresholds


def tar_at_fpr(fpr: np.ndarray, tpr: np.ndarray, fars=FARS) -> dict[float, float]:
    """TAR (fraction) at the ROC point whose FPR is nearest each target FAR; ties -> the highest TPR."""
    out = {}
    for far in fars:
        gap = np.abs(fpr - far)
        out[far] = float(tpr[gap == gap.min()].max())
    return out


def tar_at_far(labels, scores, fars=FARS) -> dict[float, float]:
    """TAR (fraction in [0, 1]) at each FAR with the nearest-FPR rule
    (docs/evaluation.md, "IJB-B / IJB-C template verification")."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return tar_at_fpr(fpr, tpr, fars)


def far_name(far: float) -> str:
    """1e-4 -> '1e-4' (metric-name suffix)."""
    mantissa, exp = f"{far:.0e}".split("e")
    return f"{mantissa}e{int(exp)}"


def evaluate_1v1(img_feats, templates, medias, p1, p2, labels, fars=FARS):
    """Whole 1:1 protocol -> (tar dict far -> fraction, (fpr, tpr))."""
    feats, unique_templates = image2template_feature(img_feats, templates, medias)
    scores = verification(feats, unique_templates, p1, p2)
    fpr, tpr, _ = roc_curve(labels, scores)
    return tar_at_fpr(fpr, tpr, fars), (fpr, tpr)


# ------------------------------------------------------------------------------------------------ 1:N (optional)
def identification_1n(template_norm_feats, unique_templates, gallery_tids, gallery_sids, probe_tids, probe_sids,
                      ranks=(1, 5, 10), fpirs=(0.01, 0.1)) -> dict[str, float]:
    """Open-set 1:N on template features -> {'rank_k': %, 'tpir_fpir_X': %}.

    Rank-k is over the mated probes (subject enrolled in this gallery). TPIR@FPIR: the threshold is the
    floor(FPIR * n)-th highest top score of the n non-mated probes (so at most FPIR of them exceed it); a mated probe
    counts when its rank-1 gallery template is its subject's and its score exceeds the threshold.
    """
    from validation.identification import topk_gallery

    feats = np.asarray(template_norm_feats, dtype=np.float32)
    gal = feats[template_rows(unique_templates, gallery_tids, "gallery template")]
    probe = feats[template_rows(unique_templates, probe_tids, "probe template")]
    gallery_sids = np.asarray(gallery_sids)
    probe_sids = np.asarray(probe_sids)
    top_s, top_i = topk_gallery(probe, gal, max(ranks))
    hit = gallery_sids[top_i] == probe_sids[:, None]
    mated = np.isin(probe_sids, gallery_sids)
    out = {}
    if mated.any():
        first_hit = np.where(hit.any(1), hit.argmax(1), np.iinfo(np.int64).max)[mated]
        out.update({f"rank_{r}": float(np.mean(first_hit < r) * 100) for r in ranks})
    if mated.any() and (~mated).any():
        nonmated_top = np.sort(top_s[~mated, 0])[::-1]
        for fpir in fpirs:
            k = int(np.floor(fpir * len(nonmated_top)))
            thr = nonmated_top[min(k, len(nonmated_top) - 1)]
            ok = hit[mated, 0] & (top_s[mated, 0] > thr)
            out[f"tpir_fpir_{far_name(fpir)}"] = float(ok.mean() * 100)
    return out
