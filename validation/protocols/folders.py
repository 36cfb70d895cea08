"""Kind `folders`: verification and 1:N on your own aligned identity folders, clean and at degradation levels.

    python main.py task=evaluate checkpoint=model.ckpt validation=folders validation.root=aligned_eval/

Pairs come from the folders (deterministic from `seed`) or from a user's `pairs.csv`; the second image of each pair is
degraded at every listed level (`degrade: both` degrades both). Metrics per level (percent): `<set>/<level>/acc`
(10-fold, folds split by identity), `f1` (threshold chosen on the other folds), `f1_at_threshold`, `eer`,
`tar_far_<far>` (only where the impostor count resolves the FAR), `rank_1`. `artifacts(out_dir)` writes the pair
list, a JSON report (unresolved FARs as null with the impostor count they need) and the ROC, DET and score histogram
pictures. Reference: (docs/evaluation.md, "Your own faces: the `folders` protocol").
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from pathlib import Path

import numpy as np

from common import atomic
from validation import pairs as pairmath
from validation.protocols.base import PROTOCOLS, SetEmbeddings, ValidationProtocol, rgb_to_bgr

log = logging.getLogger(__name__)
DEGRADE_MODES = ("second", "both")


def far_key(far: float) -> str:
    return f"{far:.0e}".replace("e-0", "e-")  # 0.1 -> 1e-1


@PROTOCOLS.register("folders")
class FoldersProtocol(ValidationProtocol):
    default_path = "."
    expects = "a folder of <identity>/<image> aligned crops (python -m dataset.prepare folders)"

    def __init__(self, name, path=None, root=None, title=None, levels=("clean",), degrade: str = "second",
                 pairs: str | None = None, genuine_per_identity: int = 50, impostor_ratio: float = 1.0,
                 seed: int = 0, threshold: float | None = 0.3, folds: int = 10, fars=pairmath.FARS):
        super().__init__(name, path, root, title)
        from dataset.synthetic.quality import check_degradation

        self.levels = ["clean"] + [str(level) for level in levels if str(level) != "clean"]
        for level in self.levels:
            check_degradation(level)
        if degrade not in DEGRADE_MODES:
            raise ValueError(f"validation set {name!r}: degrade={degrade!r}; choose one of {DEGRADE_MODES}")
        if impostor_ratio <= 0 or genuine_per_identity < 1 or folds < 2:
            raise ValueError(f"validation set {name!r}: needs impostor_ratio > 0, genuine_per_identity >= 1, "
                             "folds >= 2")
        self.degrade, self.seed, self.folds = degrade, int(seed), int(folds)
        self.threshold = None if threshold is None else float(threshold)
        self.fars = tuple(float(f) for f in fars)
        self.pairs = self._build_pairs(pairs, int(genuine_per_identity), float(impostor_ratio))
        self.impostor_ratio = float(impostor_ratio)
        self._plan()
        self._results: dict[str, dict] = {}

    def check_path(self) -> None:
        if not self.path.is_dir():
            raise FileNotFoundError(f"validation set {self.name!r}: {self.path} is not a folder (expected "
                                    f"{self.expects}); set validation.root=<folder>")

    # --- pairs and images ------------------------------------------------------------------------------------------
    def _build_pairs(self, pairs_csv, genuine_per_identity, impostor_ratio) -> pairmath.Pairs:
        if pairs_csv is not None:
            csv_path = Path(pairs_csv)
            csv_path = csv_path if csv_path.is_absolute() else self.path / csv_path
            return pairmath.read_pairs_csv(csv_path, self.path)
        from dataset.convert import list_identity_folders

        folders = list_identity_folders(self.path)
        if not folders:
            raise ValueError(f"validation set {self.name!r}: {self.path} holds no identity folders with images")
        built = pairmath.build_pairs(folders, genuine_per_identity, impostor_ratio, self.seed)
        for note in built.notes:
            log.info("validation set %s: %s", self.name, note)
        return built

    def _plan(self) -> None:
        """Dataset items: every image clean, then every image at each degraded level."""
        n = len(self.pairs.paths)
        self.items = [(i, level) for level in self.levels for i in range(n)]
        self.offset = {level: k * n for k, level in enumerate(self.levels)}
        ids = np.unique(np.asarray(self.pairs.identities), return_inverse=True)[1]
        self.image_identity = ids
        first = {}
        for i, ident in enumerate(ids.tolist()):
            first.setdefault(ident, i)
        self.gallery = np.asarray(sorted(first.values()), np.int64)
        self.probes = np.asarray([i for i in range(n) if first[int(ids[i])] != i], np.int64)
        self.fold_of_pair = pairmath.identity_folds(self.pairs.identities, self.pairs, self.folds, self.seed)

    def dataset(self, swap_rb: bool = False):
        from dataset.readers import DegradedImagesDataset

        return DegradedImagesDataset(self.pairs.paths, self.items, transform=rgb_to_bgr if swap_rb else None)

    def num_images(self) -> int:
        return len(self.items)

    # --- metrics ---------------------------------------------------------------------------------------------------
    def compute(self, embeddings: SetEmbeddings, fusion: str) -> dict[str, float]:
        emb = embeddings.fused(fusion).astype(np.float32)
        clean = emb[: len(self.pairs.paths)]
        metrics, self._results = {}, {}
        for level in self.levels:
            at = emb[self.offset[level]: self.offset[level] + len(self.pairs.paths)]
            first = at if self.degrade == "both" else clean
            scores = np.einsum("ij,ij->i", first[self.pairs.a], at[self.pairs.b])
            result = pairmath.pair_metrics(scores, self.pairs.same, self.fold_of_pair, self.threshold, self.fars)
            gallery = at if self.degrade == "both" else clean
            result["rank_1"] = pairmath.rank1(gallery[self.gallery], self.image_identity[self.gallery],
                                              at[self.probes], self.image_identity[self.probes])
            self._results[level] = result
            prefix = f"{self.name}/{level}"
            for key in ("acc", "f1", "f1_at_threshold", "eer", "rank_1"):
                if result.get(key) is not None:
                    metrics[f"{prefix}/{key}"] = 100.0 * result[key]
            for far, entry in result["tar_at_far"].items():
                if entry["tar"] is not None:
                    metrics[f"{prefix}/tar_far_{far_key(far)}"] = 100.0 * entry["tar"]
        return metrics

    def pair_scores(self, embeddings: SetEmbeddings, fusion: str):
        """Every level's pairs together (clean and degraded copies: a mixed-quality set, where discarding by quality
        can show what it is worth), subjects = identity folders, a side's quality = its fused feature norm."""
        from validation.calibration import PairScores
        from validation.flip_fusion import fuse

        unit, norm = fuse(embeddings.emb, embeddings.norm, embeddings.emb_flip, embeddings.norm_flip, fusion)
        unit, norm = np.asarray(unit, np.float32), np.asarray(norm, np.float32).reshape(-1)
        n, a, b = len(self.pairs.paths), self.pairs.a, self.pairs.b
        parts = {k: [] for k in ("scores", "labels", "sa", "sb", "qa", "qb")}
        for level in self.levels:
            second = self.offset[level] + b
            first = self.offset[level] + a if self.degrade == "both" else a
            parts["scores"].append(np.einsum("ij,ij->i", unit[first], unit[second]))
            parts["labels"].append(self.pairs.same)
            parts["sa"].append(self.image_identity[a])
            parts["sb"].append(self.image_identity[b])
            parts["qa"].append(norm[first])
            parts["qb"].append(norm[second])
        assert unit.shape[0] == n * len(self.levels), "embeddings do not match the planned items"
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        return PairScores(self.name, cat["scores"], cat["labels"], cat["sa"], cat["sb"], cat["qa"], cat["qb"],
                          source=f"{self.path}: identity-folder pairs at levels {', '.join(self.levels)} "
                                 f"(degraded: {self.degrade} image); subjects = identity folders")

    def headline(self):
        return [(f"{self.name}/{level}/{key}", f"{level} {title}") for level in self.levels
                for key, title in (("acc", "acc"), ("f1", "F1"))]

    def curves(self):
        return {f"{self.name} {level}": (r["curves"]["far"], r["curves"]["tar"]) for level, r in self._results.items()}

    def describe(self) -> str:
        """The pair counts, the impostor ratio and which FARs the impostor count resolves (printed with results)."""
        n_gen = int(self.pairs.same.sum())
        n_imp = len(self.pairs) - n_gen
        resolved = [far_key(f) for f in self.fars if n_imp >= pairmath.MIN_IMPOSTORS_PER_FAR / f - 1e-9]
        unresolved = [f"{far_key(f)} (needs {int(np.ceil(pairmath.MIN_IMPOSTORS_PER_FAR / f - 1e-9))})"
                      for f in self.fars if far_key(f) not in resolved]
        ratio = f"1:{n_imp / n_gen:.2f}" if n_gen else "-"
        return (f"{self.name}: {len(self.pairs.paths)} images, {n_gen} genuine / {n_imp} impostor pairs "
                f"(ratio {ratio}, seed {self.seed}), degraded: {self.degrade} image, levels {', '.join(self.levels)}; "
                f"TAR@FAR reported for {', '.join(resolved) or 'none'}; null: {', '.join(unresolved) or 'none'}")

    # --- files beside the results ---------------------------------------------------------------------------------
    def report(self) -> dict:
        levels = {}
        for level, r in self._results.items():
            levels[level] = {
                **{k: (None if r.get(k) is None else float(r[k])) for k in
                   ("acc", "f1", "f1_at_threshold", "acc_at_threshold", "eer", "rank_1", "best_threshold")},
                "tar_at_far": {far_key(f): e for f, e in r["tar_at_far"].items()},
            }
        n_gen = int(self.pairs.same.sum())
        return {"set": self.name, "root": str(self.path), "images": len(self.pairs.paths), "genuine_pairs": n_gen,
                "impostor_pairs": len(self.pairs) - n_gen, "impostor_ratio": self.impostor_ratio, "seed": self.seed,
                "degrade": self.degrade, "threshold": self.threshold, "folds": self.folds,
                "notes": list(self.pairs.notes), "levels": levels}

    def artifacts(self, out_dir) -> list[Path]:
        """pairs_<set>.csv, folders_<set>.json, roc_/det_/scores_<set>.png in `out_dir`."""
        from validation.report import save_det_png, save_roc_png, save_score_histograms_png

        out_dir = Path(out_dir)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["path_a", "path_b", "same"])
        writer.writerows(self.pairs.rows(self.path))
        written = [atomic.write_text(out_dir / f"pairs_{self.name}.csv", text.getvalue()),
                   atomic.write_json(out_dir / f"folders_{self.name}.json", self.report())]
        if self._results:
            curves = self.curves()
            written.append(save_roc_png(curves, out_dir / f"roc_{self.name}.png", title=f"{self.name} ROC"))
            det = {label: (np.asarray(far), 1.0 - np.asarray(tar)) for label, (far, tar) in curves.items()}
            written.append(save_det_png(det, out_dir / f"det_{self.name}.png", title=f"{self.name} DET"))
            histograms = {level: (r["genuine"], r["impostor"], r["best_threshold"])
                          for level, r in self._results.items()}
            written.append(save_score_histograms_png(histograms, out_dir / f"scores_{self.name}.png",
                                                     title=f"{self.name} scores"))
        return written


def overlap(train_root, eval_root) -> list[str]:
    """Why `train_root` and `eval_root` (identity folders) are not disjoint: shared identity names and files with
    identical bytes. Empty when they are disjoint."""
    from dataset.convert import list_identity_folders

    train, evaluation = list_identity_folders(train_root), list_identity_folders(eval_root)
    problems = []
    shared = sorted({i for i, _ in train} & {i for i, _ in evaluation})
    if shared:
        problems.append(f"{len(shared)} identity names in both: {', '.join(shared[:10])}"
                        + (" ..." if len(shared) > 10 else ""))

    def digests(folders):
        return {hashlib.sha1(p.read_bytes()).hexdigest(): f"{i}/{p.name}" for i, files in folders for p in files}

    train_d, eval_d = digests(train), digests(evaluation)
    same = sorted(set(train_d) & set(eval_d))
    if same:
        problems.append(f"{len(same)} identical images, e.g. {train_d[same[0]]} (training) = {eval_d[same[0]]} "
                        "(evaluation)")
    return problems
