"""Test-time flip fusion of (unit embedding, norm) pairs.

Every mode returns `(unit_embedding [N, D'], norm [N, 1])` so callers can rebuild the un-normalised feature as
`unit * norm` (IJB's `norm` image feature). Inputs are numpy arrays: unit embeddings [N, D] and norms [N, 1] (or [N]).
"""

import numpy as np

FUSION_MODES = ("pre_norm_add", "average", "norm_weighted", "concat")


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise L2 normalisation; returns (unit rows, norms [N, 1]) in x's dtype."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, eps).astype(x.dtype, copy=False), norm


def _as_column(norm: np.ndarray, n: int) -> np.ndarray:
    norm = np.asarray(norm)
    if norm.size != n:
        raise ValueError(f"norm has {norm.size} values for {n} embeddings")
    return norm.reshape(n, 1)


def fuse(emb: np.ndarray, norm: np.ndarray, emb_flip: np.ndarray | None = None, norm_flip: np.ndarray | None = None,
         mode: str = "pre_norm_add") -> tuple[np.ndarray, np.ndarray]:
    """Fuse the embedding of an image with the one of its horizontal flip.

    - `pre_norm_add` (default, AdaFace / QGFace): l2n(f*||f|| + f_flip*||f_flip||); norm = ||sum||.
    - `average`: l2n(f + f_flip); norm = mean of the two norms.
    - `norm_weighted`: l2n of the norm-weighted average (same direction as pre_norm_add; norm = weighted mean norm).
    - `concat`: l2n([f, f_flip]) (= [f, f_flip] / sqrt(2) for unit inputs): unit length, so inner products and the
      0..4 distance thresholds of the verification protocol still apply; norm = mean of the two norms.
    Without a flip (emb_flip None) the inputs are returned unchanged.
    """
    emb = np.asarray(emb)
    n = emb.shape[0]
    norm = _as_column(norm, n)
    if emb_flip is None:
        return emb, norm
    emb_flip = np.asarray(emb_flip)
    if emb_flip.shape != emb.shape:
        raise ValueError(f"emb_flip shape {emb_flip.shape} != emb shape {emb.shape}")
    norm_flip = _as_column(norm_flip, n)
    if mode == "pre_norm_add":
        return l2_normalize(emb * norm + emb_flip * norm_flip)
    if mode == "average":
        unit, _ = l2_normalize(emb + emb_flip)
        return unit, (norm + norm_flip) / 2
    if mode == "norm_weighted":
        total = np.maximum(norm + norm_flip, 1e-12)
        unit, _ = l2_normalize(emb * (norm / total) + emb_flip * (norm_flip / total))
        return unit, (norm * norm + norm_flip * norm_flip) / total
    if mode == "concat":
        unit, _ = l2_normalize(np.concatenate([emb, emb_flip], axis=1))
        return unit, (norm + norm_flip) / 2
    raise ValueError(f"unknown fusion mode {mode!r}; choose one of {FUSION_MODES}")
