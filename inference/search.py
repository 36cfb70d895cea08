"""Top-k search of unit embeddings by cosine similarity: exact (numpy, the default) or a FAISS IVF-Flat index for
large galleries (docs/deployment.md, "1:N identification").

Both return (scores [Q, k] float32 descending, rows [Q, k] int64); rows are gallery row numbers (-1 where the
index found fewer than k candidates: IVF with few probed lists).
"""

from __future__ import annotations

import math
import time

import numpy as np


def _check_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ValueError(f"queries must be [Q, {dim}], got {list(queries.shape)}")
    if not np.isfinite(queries).all():
        raise ValueError("queries hold non-finite values")
    return queries


class ExactIndex:
    """Brute-force inner product in blocks of queries; a block's score matrix holds at most `cells` floats (about
    256 MB), so memory stays the gallery plus a fixed amount whatever N is."""

    kind = "exact"

    def __init__(self, embeddings: np.ndarray, block: int | None = None, cells: int = 1 << 26):
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.block = block or int(min(256, max(8, cells // max(len(self.embeddings), 1))))

    @property
    def size(self) -> int:
        return len(self.embeddings)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check_queries(queries, self.embeddings.shape[1])
        n = self.size
        k = min(k, n)
        scores = np.empty((len(queries), k), np.float32)
        rows = np.empty((len(queries), k), np.int64)
        for start in range(0, len(queries), self.block):
            sim = queries[start:start + self.block] @ self.embeddings.T
            if k == 1:
                top = sim.argmax(axis=1)[:, None]
            elif k < n:
                top = np.argpartition(sim, n - k, axis=1)[:, n - k:]
            else:
                top = np.broadcast_to(np.arange(n), sim.shape).copy()
            top_scores = np.take_along_axis(sim, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            rows[start:start + len(sim)] = np.take_along_axis(top, order, axis=1)
            scores[start:start + len(sim)] = np.take_along_axis(top_scores, order, axis=1)
        return scores, rows


def default_nlist(n: int) -> int:
    """About sqrt(N) inverted lists, and at least 39 training points per list (FAISS warns below that)."""
    return max(1, min(round(math.sqrt(n)), n // 39))


class IvfIndex:
    """FAISS IndexIVFFlat on inner product: `nlist` k-means lists, `nprobe` of them visited per query."""

    kind = "ivf"

    def __init__(self, index, nprobe: int):
        self.index = index
        self.nprobe = int(nprobe)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @property
    def nlist(self) -> int:
        return int(self.index.nlist)

    @classmethod
    def build(cls, embeddings: np.ndarray, nlist: int | None = None, seed: int = 0,
              train_size: int | None = None) -> IvfIndex:
        import faiss

        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        n, dim = x.shape
        nlist = nlist or default_nlist(n)
        if nlist > n:
            raise ValueError(f"IVF needs at least nlist={nlist} gallery rows, the gallery has {n}")
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        train_size = min(n, train_size or max(64 * nlist, 20_000))
        sample = x if train_size >= n else x[np.random.default_rng(seed).choice(n, train_size, replace=False)]
        index.train(sample)
        index.add(x)
        return cls(index, nprobe=1)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = _check_queries(queries, self.index.d)
        self.index.nprobe = self.nprobe
        scores, rows = self.index.search(queries, min(k, self.size))
        return scores.astype(np.float32), rows.astype(np.int64)

    def to_bytes(self) -> np.ndarray:
        import faiss

        return faiss.serialize_index(self.index)

    @classmethod
    def from_bytes(cls, data: np.ndarray, nprobe: int) -> IvfIndex:
        import faiss

        return cls(faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8)), nprobe)


def noisy_queries(embeddings: np.ndarray, count: int, cosine: float = 0.6, seed: int = 0) -> np.ndarray:
    """`count` gallery rows moved to about `cosine` similarity with themselves (random orthogonal noise): stand-in
    probes for measuring an index's recall against exact search when no real probes are at hand."""
    rng = np.random.default_rng(seed)
    picked = embeddings[rng.choice(len(embeddings), min(count, len(embeddings)), replace=False)]
    noise = rng.standard_normal(picked.shape).astype(np.float32)
    noise -= (noise * picked).sum(1, keepdims=True) * picked
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    q = cosine * picked + math.sqrt(1 - cosine ** 2) * noise
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def recall_sweep(index: IvfIndex, exact: ExactIndex, queries: np.ndarray,
                 nprobes=(1, 2, 4, 8, 16, 32, 64, 128)) -> list[dict]:
    """Recall@1 of the IVF index against exact search, and queries/s, per nprobe (nprobe <= nlist)."""
    _, truth = exact.search(queries, 1)
    rows = []
    for nprobe in [p for p in nprobes if p <= index.nlist]:
        index.nprobe = nprobe
        start = time.perf_counter()
        _, found = index.search(queries, 1)
        seconds = time.perf_counter() - start
        rows.append({"nprobe": nprobe, "recall_at_1": float((found[:, 0] == truth[:, 0]).mean()),
                     "queries_per_s": len(queries) / max(seconds, 1e-9)})
    return rows


def pick_nprobe(sweep: list[dict], target_recall: float) -> int:
    """The smallest swept nprobe reaching `target_recall` (the largest swept one when none does)."""
    if not sweep:
        raise ValueError("empty nprobe sweep")
    for row in sweep:
        if row["recall_at_1"] >= target_recall:
            return int(row["nprobe"])
    return int(sweep[-1]["nprobe"])
