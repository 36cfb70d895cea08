"""The 1:N gallery: its file (one `.npz` without pickled objects;
docs/formats.md, "Gallery file (`inference/gallery.py`, written by task=enroll)"), the model check, the top-k identity
search and the open-set threshold at a target FPIR (docs/deployment.md, "1:N identification").

Rows are unit embeddings; an identity may have several rows, and its score for a probe is its best row.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common import atomic
from inference.model_identity import CHECKED_FIELDS, file_sha256, select_protocol
from inference.search import ExactIndex, IvfIndex

FORMAT = "mqface-gallery"
VERSION = 1
# the identity fields a probe embedder must share with the gallery (the flip fusion too: it changes the embedding)
GALLERY_FIELDS = (*CHECKED_FIELDS, "flip_fusion")


@dataclass
class Gallery:
    embeddings: np.ndarray  # [N, D] float32, unit rows
    labels: np.ndarray  # [N] int64, index into `identities`
    identities: list[str]
    sources: list[str]  # row -> where the embedding came from (image path)
    model: dict  # inference.model_identity.model_identity of the embedder, flip_fusion included
    thresholds: dict | None = None  # {file, sha256} of the thresholds.json the gallery was made with
    index: dict | None = None  # {kind: ivf, nlist, nprobe, sweep, build_s} when an IVF index is stored
    ivf: np.ndarray | None = field(default=None, repr=False)  # the serialized FAISS index (uint8)

    @property
    def size(self) -> int:
        return len(self.embeddings)

    def search_index(self, kind: str = "auto"):
        """The stored IVF index (kind auto/ivf) or exact search."""
        if kind == "ivf" and self.ivf is None:
            raise ValueError("the gallery has no IVF index: enroll with enroll.index=ivf")
        if kind in ("auto", "ivf") and self.ivf is not None:
            return IvfIndex.from_bytes(self.ivf, int(self.index["nprobe"]))
        return ExactIndex(self.embeddings)


def check_embeddings(emb: np.ndarray, what: str) -> np.ndarray:
    emb = np.asarray(emb)
    if emb.ndim != 2:
        raise ValueError(f"{what}: embeddings must be [N, D], got shape {list(emb.shape)}")
    if not np.isfinite(emb).all():
        raise ValueError(f"{what}: embeddings hold non-finite values")
    norms = np.linalg.norm(emb, axis=1)
    if len(emb) and np.abs(norms - 1).max() > 1e-3:
        raise ValueError(f"{what}: embeddings must be unit vectors (norms from {norms.min():.4f} to {norms.max():.4f})")
    return emb.astype(np.float32)


def model_mismatch(gallery_model: dict, model: dict) -> list[str]:
    return [f"{k}: gallery has {gallery_model.get(k)!r}, probe model has {model.get(k)!r}" for k in GALLERY_FIELDS
            if gallery_model.get(k) != model.get(k)]


def check_model(gallery: Gallery, model: dict, path) -> None:
    """Refuse a probe embedder that is not the gallery's model (ValueError naming the file and the fields)."""
    bad = model_mismatch(gallery.model, model)
    if bad:
        raise ValueError(f"refusing gallery {path}: it was enrolled with another model ({'; '.join(bad)})")


def save_gallery(path, gallery: Gallery) -> Path:
    """Write the gallery atomically (common.atomic): arrays + a JSON metadata blob, no pickled objects."""
    check_embeddings(gallery.embeddings, str(path))
    meta = {"format": FORMAT, "version": VERSION, "model": gallery.model, "thresholds": gallery.thresholds,
            "identities": list(gallery.identities), "sources": list(gallery.sources), "index": gallery.index,
            "count": gallery.size, "dim": int(gallery.embeddings.shape[1])}
    arrays = {"embeddings": gallery.embeddings.astype(np.float32), "labels": gallery.labels.astype(np.int64),
              "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    if gallery.ivf is not None:
        arrays["ivf"] = np.asarray(gallery.ivf, dtype=np.uint8)
    with atomic.atomic_write(path) as f:
        np.savez(f, **arrays)
    return Path(path)


def load_gallery(path, allow_empty: bool = False) -> Gallery:
    """Read and check a gallery file; an empty one is an error unless `allow_empty` (enroll appending)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gallery file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(arrays["meta"].tobytes().decode())
    except KeyError as e:
        raise ValueError(f"{path}: not a gallery file (missing {e})") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the gallery file ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a gallery file (metadata format is not {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: gallery format version {meta.get('version')} (this code reads {VERSION})")
    for key in ("embeddings", "labels"):
        if key not in arrays:
            raise ValueError(f"{path}: not a gallery file (missing array {key!r})")
    emb = check_embeddings(arrays["embeddings"], str(path))
    labels = arrays["labels"].astype(np.int64)
    identities, sources = list(meta["identities"]), list(meta["sources"])
    if len(labels) != len(emb) or len(sources) != len(emb):
        raise ValueError(f"{path}: {len(emb)} embeddings but {len(labels)} labels and {len(sources)} sources")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(identities)):
        raise ValueError(f"{path}: labels outside the {len(identities)} identities")
    if not len(emb) and not allow_empty:
        raise ValueError(f"gallery {path} is empty: enroll identities first (task=enroll)")
    return Gallery(emb, labels, identities, sources, meta["model"], meta.get("thresholds"), meta.get("index"),
                   arrays.get("ivf"))


def merge(gallery: Gallery | None, embeddings: np.ndarray, names: list[str], sources: list[str], model: dict,
          thresholds: dict | None) -> Gallery:
    """`gallery` plus new rows (`names[i]` = identity of row i); identities already present get more rows. The
    result has no index (rebuild it after)."""
    embeddings = check_embeddings(embeddings, "enrolled faces")
    if gallery is None:
        gallery = Gallery(np.zeros((0, embeddings.shape[1]), np.float32), np.zeros(0, np.int64), [], [], model,
                          thresholds)
    if gallery.size and embeddings.shape[1] != gallery.embeddings.shape[1]:
        raise ValueError(f"new embeddings have {embeddings.shape[1]} dimensions, the gallery "
                         f"{gallery.embeddings.shape[1]}")
    identities = list(gallery.identities)
    position = {name: i for i, name in enumerate(identities)}
    for name in names:
        if name not in position:
            position[name] = len(identities)
            identities.append(name)
    labels = np.array([position[n] for n in names], np.int64)
    return Gallery(np.concatenate([gallery.embeddings, embeddings]), np.concatenate([gallery.labels, labels]),
                   identities, gallery.sources + list(sources), gallery.model,
                   gallery.thresholds if gallery.thresholds is not None else thresholds)


def search_identities(gallery: Gallery, index, probes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k *identities* per probe: (scores [Q, k] descending, identity numbers [Q, k], -1 where fewer exist).

    An identity with up to m rows takes at most m places, so the top k*m rows hold the top k identities."""
    per_identity = int(np.bincount(gallery.labels).max()) if gallery.size else 1
    scores, rows = index.search(probes, min(gallery.size, k * per_identity))
    out_scores = np.full((len(probes), k), -np.inf, np.float32)
    out_ids = np.full((len(probes), k), -1, np.int64)
    for q in range(len(probes)):
        seen = 0
        taken = set()
        for s, r in zip(scores[q], rows[q], strict=True):
            if r < 0:
                continue
            ident = int(gallery.labels[r])
            if ident in taken:
                continue
            taken.add(ident)
            out_scores[q, seen], out_ids[q, seen] = s, ident
            seen += 1
            if seen == k:
                break
    return out_scores, out_ids


def threshold_from_nonmated(top1: np.ndarray, fpir: float) -> dict:
    """Threshold whose false-positive identification rate on these non-mated searches (top-1 score > threshold)
    is at most `fpir`. Needs at least 1/fpir searches."""
    top1 = np.sort(np.asarray(top1, np.float64))[::-1]
    if not np.isfinite(top1).all():
        raise ValueError("non-mated search scores hold non-finite values")
    if len(top1) * fpir < 1:
        raise ValueError(f"FPIR {fpir:g} needs at least {math.ceil(1 / fpir)} non-mated searches, got {len(top1)}")
    allowed = int(math.floor(fpir * len(top1)))  # searches allowed above the threshold
    threshold = float(top1[allowed]) if allowed < len(top1) else float(top1[-1])
    return {"threshold": threshold, "source": "non-mated searches", "searches": len(top1),
            "fpir_measured": float((top1 > threshold).mean())}


def threshold_from_far(thresholds: dict, fpir: float, gallery_size: int, protocol: str | None = None) -> dict:
    """Threshold of a calibrated 1:1 FAR for FPIR ~ N x FAR: the largest calibrated FAR not above FPIR / N (the
    conservative side of independent impostor comparisons)."""
    protocols = thresholds["protocols"]
    protocol = select_protocol(thresholds, protocol)
    want = fpir / gallery_size
    usable = [e for e in protocols[protocol]["entries"] if e["threshold"] is not None and e["far"] <= want * (1 + 1e-9)]
    if not usable:
        resolved = [e["far"] for e in protocols[protocol]["entries"] if e["threshold"] is not None]
        raise ValueError(f"FPIR {fpir:g} on a gallery of {gallery_size} needs FAR <= {want:.3g}; protocol "
                         f"{protocol!r} resolves only {resolved}: calibrate smaller FARs or give non-mated searches")
    entry = max(usable, key=lambda e: e["far"])
    return {"threshold": float(entry["threshold"]), "source": "FAR = FPIR / N", "far_wanted": want,
            "far_used": float(entry["far"]), "protocol": protocol}


def thresholds_reference(path) -> dict:
    return {"file": str(path), "sha256": file_sha256(path)}
