"""1:N identification: enroll identities into a gallery file, identify probes against it (docs/deployment.md,
"1:N identification"). `tasks.enroll` and `tasks.identify` are the Hydra front ends.

    run_enroll("people/", "gallery.npz", checkpoint="model.onnx")          # people/<identity>/<images>
    run_identify("probes/", "gallery.npz", "out/", checkpoint="model.onnx", k=5, fpir=0.01)

Inputs are a folder of photos (identity folders for enrollment) or the output folder of task=embed
(`embeddings.npy`, `index.csv`, `model.json`).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import numpy as np

from common import atomic
from common.run_lock import RunDirBusy, RunDirLock
from inference.backends import build_backend
from inference.embedder import embed_images, list_images
from inference.faces import FaceAligner
from inference.gallery import (
    Gallery,
    check_model,
    load_gallery,
    merge,
    model_mismatch,
    save_gallery,
    search_identities,
    threshold_from_far,
    threshold_from_nonmated,
    thresholds_reference,
)
from inference.model_identity import file_sha256, load_thresholds, model_identity
from inference.search import ExactIndex, IvfIndex, noisy_queries, pick_nprobe, recall_sweep

log = logging.getLogger(__name__)
EMBEDDINGS_FILES = ("embeddings.npy", "index.csv", "model.json")


def is_embeddings_dir(path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "embeddings.npy").is_file()


def read_embeddings_dir(path) -> tuple[np.ndarray, list[str], dict]:
    """(unit embeddings, relative image paths, model identity) of a task=embed output folder."""
    path = Path(path)
    missing = [name for name in EMBEDDINGS_FILES if not (path / name).is_file()]
    if missing:
        raise ValueError(f"{path}: a task=embed output folder needs {', '.join(EMBEDDINGS_FILES)}; missing "
                         f"{', '.join(missing)}" + (" (model.json names the model: re-run task=embed with a "
                                                    "checkpoint)" if "model.json" in missing else ""))
    emb = np.load(path / "embeddings.npy", allow_pickle=False)
    with open(path / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != len(emb):
        raise ValueError(f"{path}: index.csv has {len(rows)} rows, embeddings.npy {len(emb)}")
    return emb, [r["path"] for r in rows], json.loads((path / "model.json").read_text())


class Embedder:
    """The model, its identity and the face aligner, built once for photos."""

    def __init__(self, checkpoint, arch, flip_fusion, backbone_kwargs=None, align="auto", mtcnn_weights=None,
                 device="cpu", batch_size=32):
        if checkpoint is None:
            raise ValueError("embedding photos for a gallery needs checkpoint=<checkpoint or .onnx> (its sha256 "
                             "names the model in the gallery)")
        self.identity = model_identity(checkpoint, arch, flip_fusion, backbone_kwargs)
        self.checkpoint, self.arch, self.kwargs = checkpoint, arch, backbone_kwargs
        self.align, self.mtcnn_weights, self.device, self.batch_size = align, mtcnn_weights, device, batch_size
        self.flip_fusion = flip_fusion
        self._backend = self._aligner = None

    def __call__(self, paths, desc: str):
        if self._backend is None:
            self._backend = build_backend(self.checkpoint, self.arch, device=self.device,
                                          backbone_kwargs=self.kwargs)
            self._aligner = FaceAligner(align=self.align, mtcnn_weights=self.mtcnn_weights, device=self.device)
        out = embed_images(paths, self._backend, self._aligner, self.batch_size, desc=desc,
                           flip_fusion=self.flip_fusion)
        for s in out.skipped:
            log.warning("skipped %s: %s", s.path, s.reason)
        return out.embeddings, [f.path for f in out.faces]


def identity_of(relative: Path) -> str:
    """The identity of an enrolled image: its first folder under the enrollment root."""
    parts = Path(relative).parts
    if len(parts) < 2:
        path = relative
        raise ValueError(f"{path}: enrollment needs identity folders, <root>/<identity>/<image>")
    return parts[0]


def build_index(gallery: Gallery, kind: str, min_size: int, target_recall: float, nlist: int | None,
                seed: int = 0) -> Gallery:
    """Attach an IVF-Flat index (kind ivf, or auto at >= min_size rows) with its nprobe sweep, printed."""
    gallery.index, gallery.ivf = None, None
    if kind == "exact" or (kind == "auto" and gallery.size < min_size):
        return gallery
    start = time.perf_counter()
    index = IvfIndex.build(gallery.embeddings, nlist=nlist, seed=seed)
    build_s = time.perf_counter() - start
    queries = noisy_queries(gallery.embeddings, 2000, seed=seed)
    sweep = recall_sweep(index, ExactIndex(gallery.embeddings), queries)
    nprobe = pick_nprobe(sweep, target_recall)
    print(f"IVF-Flat index: {gallery.size} rows, nlist {index.nlist}, built in {build_s:.1f} s; recall@1 against "
          f"exact search on {len(queries)} noisy gallery queries (cosine 0.6):")
    for row in sweep:
        mark = "  <- used" if row["nprobe"] == nprobe else ""
        print(f"  nprobe {row['nprobe']:4d}  recall@1 {row['recall_at_1']:.4f}  {row['queries_per_s']:9.0f} "
              f"queries/s{mark}")
    gallery.index = {"kind": "ivf", "nlist": index.nlist, "nprobe": nprobe, "target_recall": target_recall,
                     "build_s": build_s, "sweep": sweep}
    gallery.ivf = index.to_bytes()
    return gallery


def run_enroll(input_path, gallery_path, *, checkpoint=None, arch=None, backbone_kwargs=None, thresholds=None,
               align="auto", mtcnn_weights=None, device="cpu", batch_size=32, index="auto",
               ivf_min_size=200_000, target_recall=0.99, nlist=None, stale_after_s=300.0,
               heartbeat_s=30.0) -> dict:
    """Add the faces under `input_path` to the gallery file (created when absent). A second enroll on the same
    gallery while this one runs is refused (a lock file beside the gallery)."""
    input_path, gallery_path = Path(input_path), Path(gallery_path)
    if not input_path.exists():
        raise FileNotFoundError(f"enroll input not found: {input_path}")
    lock = RunDirLock(gallery_path.parent, stale_after_s, heartbeat_s, name=f".{gallery_path.name}.lock")
    try:
        lock.acquire()
    except RunDirBusy as e:
        raise RunDirBusy(f"gallery {gallery_path} is being enrolled into by another process: {e}") from None
    try:
        existing = load_gallery(gallery_path, allow_empty=True) if gallery_path.exists() else None
        if is_embeddings_dir(input_path):
            emb, rel, model = read_embeddings_dir(input_path)
            names, sources = [identity_of(Path(p)) for p in rel], rel
            if checkpoint is not None:
                bad = model_mismatch(model, model_identity(checkpoint, arch, model.get("flip_fusion"),
                                                           backbone_kwargs))
                if bad:
                    raise ValueError(f"{input_path}: the embeddings were made with another model than "
                                     f"{checkpoint} ({'; '.join(bad)})")
        else:
            flip = existing.model.get("flip_fusion") if existing else None
            if thresholds is not None and existing is None:
                probe = model_identity(checkpoint, arch, None, backbone_kwargs) if checkpoint else None
                flip = load_thresholds(thresholds, probe)["model"]["flip_fusion"] if probe else None
            embedder = Embedder(checkpoint, arch, flip, backbone_kwargs, align, mtcnn_weights, device, batch_size)
            model = embedder.identity
            if existing is not None:
                check_model(existing, model, gallery_path)
            paths = list_images(input_path)
            names = [identity_of(p.relative_to(input_path)) for p in paths]
            emb, found = embedder(paths, "enroll")
            kept = {p: n for p, n in zip(paths, names, strict=True)}
            names = [kept[p] for p in found]
            sources = [str(p.relative_to(input_path)) for p in found]
        if existing is not None:
            check_model(existing, model, gallery_path)
        ref = None
        if thresholds is not None:
            calibrated = load_thresholds(thresholds, model)["model"].get("flip_fusion")  # refuses another model's
            if calibrated != model.get("flip_fusion"):
                message = (f"{thresholds} was calibrated with flip fusion {calibrated!r}, the gallery's embeddings "
                           f"use {model.get('flip_fusion')!r}: its thresholds would not hold")
                if existing is not None or not is_embeddings_dir(input_path):
                    raise ValueError(message)
                log.warning("%s (task=embed folders hold single-crop embeddings)", message)
            ref = thresholds_reference(thresholds)
        if len(emb) == 0:
            raise ValueError(f"{input_path}: no face to enroll")
        gallery = merge(existing, emb, names, sources, model, ref)
        gallery = build_index(gallery, index, ivf_min_size, target_recall, nlist)
        save_gallery(gallery_path, gallery)
    finally:
        lock.release()
    summary = {"gallery": str(gallery_path), "added": len(emb), "rows": gallery.size,
               "identities": len(gallery.identities), "index": (gallery.index or {"kind": "exact"})["kind"],
               "model": gallery.model["file"]}
    print(f"enrolled {len(emb)} faces -> {gallery_path}: {gallery.size} rows, {len(gallery.identities)} "
          f"identities, {summary['index']} search, model {gallery.model['file']} ({gallery.model['sha256'][:12]})")
    return summary


def _probe_embeddings(path, gallery: Gallery, gallery_path, embedder_args: dict, what: str):
    """(embeddings, names) of probes: a task=embed folder (its model.json checked) or photos (model checked first)."""
    path = Path(path)
    if is_embeddings_dir(path):
        emb, rel, model = read_embeddings_dir(path)
        check_model(gallery, model, gallery_path)
        return emb.astype(np.float32), list(rel)
    embedder = Embedder(flip_fusion=gallery.model.get("flip_fusion"), **embedder_args)
    check_model(gallery, embedder.identity, gallery_path)  # before any photo is embedded
    emb, found = embedder(list_images(path), what)
    root = path if path.is_dir() else path.parent
    return emb, [str(p.relative_to(root)) for p in found]


def decision_threshold(gallery: Gallery, index, fpir: float, nonmated, thresholds, protocol, embedder_args,
                       gallery_path) -> dict | None:
    """Open-set threshold at `fpir`: from non-mated searches when given, else a calibrated FAR = FPIR / N from
    the thresholds file (the given one, or the one the gallery was made with); None when neither exists."""
    if nonmated is not None:
        emb, _ = _probe_embeddings(nonmated, gallery, gallery_path, embedder_args, "non-mated")
        top1, _ = search_identities(gallery, index, emb, 1)
        return threshold_from_nonmated(top1[:, 0], fpir)
    if thresholds is None and gallery.thresholds is not None:
        thresholds = gallery.thresholds["file"]
        if not Path(thresholds).is_file():
            raise FileNotFoundError(f"gallery {gallery_path} was made with thresholds file {thresholds}, which is "
                                    "gone: pass identify.thresholds=... or identify.nonmated=...")
        if file_sha256(thresholds) != gallery.thresholds["sha256"]:
            raise ValueError(f"thresholds file {thresholds} changed since gallery {gallery_path} was made with it")
    if thresholds is None:
        return None
    data = load_thresholds(thresholds, gallery.model)
    return {**threshold_from_far(data, fpir, len(gallery.identities), protocol), "file": str(thresholds)}


def run_identify(probes, gallery_path, output_dir, *, checkpoint=None, arch=None, backbone_kwargs=None, k=5,
                 fpir=0.01, nonmated=None, thresholds=None, protocol=None, search="auto", align="auto",
                 mtcnn_weights=None, device="cpu", batch_size=32) -> dict:
    """Top-k identities per probe, and for the best one a decision at `fpir` (see `decision_threshold`)."""
    gallery = load_gallery(gallery_path)
    args = {"checkpoint": checkpoint, "arch": arch, "backbone_kwargs": backbone_kwargs, "align": align,
            "mtcnn_weights": mtcnn_weights, "device": device, "batch_size": batch_size}
    emb, names = _probe_embeddings(probes, gallery, gallery_path, args, "probes")
    index = gallery.search_index(search)
    k = min(k, len(gallery.identities))
    start = time.perf_counter()
    scores, ids = search_identities(gallery, index, emb, k)
    search_s = time.perf_counter() - start
    rule = decision_threshold(gallery, index, fpir, nonmated, thresholds, protocol, args, gallery_path)

    output_dir = Path(output_dir)
    rows = []
    for q, name in enumerate(names):
        for rank in range(k):
            if ids[q, rank] < 0:
                continue
            decision = ""
            if rank == 0 and rule is not None:
                decision = "match" if scores[q, 0] > rule["threshold"] else "not in gallery"
            rows.append({"probe": name, "rank": rank + 1, "identity": gallery.identities[ids[q, rank]],
                         "score": f"{scores[q, rank]:.4f}", "decision": decision})
    with atomic.atomic_write(output_dir / "identify.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["probe", "rank", "identity", "score", "decision"])
        writer.writeheader()
        writer.writerows(rows)
    summary = {"gallery": str(gallery_path), "identities": len(gallery.identities), "rows": gallery.size,
               "probes": len(names), "k": k, "search": index.kind, "search_s": search_s, "fpir": fpir,
               "decision": rule, "output_dir": str(output_dir)}
    atomic.write_json(output_dir / "identify.json", summary)
    if rule is None:
        print("no open-set decision: give identify.nonmated=<non-mated probes> or a thresholds file")
    elif rule["source"] == "non-mated searches":
        print(f"open-set threshold {rule['threshold']:.4f} at FPIR {fpir:g} from {rule['searches']} non-mated "
              f"searches (measured FPIR {rule['fpir_measured']:.4f})")
    else:
        print(f"open-set threshold {rule['threshold']:.4f} at FPIR {fpir:g}: FAR = FPIR / N = "
              f"{rule['far_wanted']:.3g}, calibrated FAR {rule['far_used']:g} of {rule['protocol']} used")
    for q, name in enumerate(names):
        best = next((r for r in rows if r["probe"] == name and r["rank"] == 1), None)
        tail = "" if best is None or not best["decision"] else f"  -> {best['decision']}"
        top = ", ".join(f"{gallery.identities[i]} {s:.3f}" for s, i in zip(scores[q], ids[q], strict=True) if i >= 0)
        print(f"{name}: {top}{tail}")
    print(f"results in {output_dir}")
    return summary
