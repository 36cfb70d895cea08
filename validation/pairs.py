"""Verification pairs of your own identity folders and their metrics, in plain numpy
(docs/evaluation.md, "Your own faces: the `folders` protocol").

- `build_pairs`: every genuine pair of each identity up to a cap, impostors at a stated ratio, from a seed.
- `read_pairs_csv`: a user's `path_a,path_b,same` list.
- `pair_metrics`: 10-fold accuracy with folds split by identity, F1 at the best threshold (chosen on the other
  folds) and at a given threshold, EER, TAR at FAR (only where the impostor count resolves the FAR), ROC/DET points.
- `rank1`: 1:N identification with one gallery image per identity.
Scores are cosine similarities of unit embeddings: higher means "same", a pair is accepted iff score >= threshold.
"""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
MIN_IMPOSTORS_PER_FAR = 3  # a FAR is reported only when impostors >= 3 / FAR (the calibration issue reuses this)


@dataclass
class Pairs:
    """Pairs over a list of images: indices into `paths`, `same` labels, and the identity of every image."""

    paths: list[Path]
    identities: list[str]  # per image
    a: np.ndarray
    b: np.ndarray
    same: np.ndarray
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.same)

    def rows(self, root: Path | None = None) -> list[tuple[str, str, int]]:
        def name(p: Path) -> str:
            if root is not None:
                try:
                    return p.relative_to(root).as_posix()
                except ValueError:
                    pass
            return str(p)

        return [(name(self.paths[i]), name(self.paths[j]), int(s)) for i, j, s in zip(self.a, self.b, self.same)]


def build_pairs(folders: list[tuple[str, list[Path]]], genuine_per_identity: int = 50, impostor_ratio: float = 1.0,
                seed: int = 0) -> Pairs:
    """Deterministic pairs from `(identity, sorted image paths)`: every genuine pair of an identity (all
    combinations, sampled down to `genuine_per_identity` when there are more), then `round(impostor_ratio x
    genuine)` distinct impostor pairs drawn uniformly over images of different identities."""
    rng = np.random.default_rng(seed)
    paths, identities, start = [], [], []
    for ident, files in folders:
        start.append(len(paths))
        paths += list(files)
        identities += [ident] * len(files)
    notes = []
    a, b = [], []
    for (ident, files), first in zip(folders, start):
        combos = list(itertools.combinations(range(len(files)), 2))
        if not combos:
            notes.append(f"{ident}: one image (impostor pairs only, no genuine pair)")
            continue
        if len(combos) > genuine_per_identity:
            keep = np.sort(rng.choice(len(combos), genuine_per_identity, replace=False))
            combos = [combos[k] for k in keep]
        a += [first + i for i, _ in combos]
        b += [first + j for _, j in combos]
    n_gen = len(a)
    if n_gen == 0:
        raise ValueError("no genuine pair: every identity folder holds a single image")
    ident_ids = np.unique(np.asarray(identities), return_inverse=True)[1]
    if ident_ids.max() == 0:
        raise ValueError("impostor pairs need at least two identity folders")
    n_imp = int(round(impostor_ratio * n_gen))
    n_img = len(paths)
    possible = (n_img * n_img - int(np.sum(np.bincount(ident_ids) ** 2))) // 2
    if n_imp > possible:
        notes.append(f"impostors capped at the {possible} possible pairs (asked {n_imp})")
        n_imp = possible
    seen: set[tuple[int, int]] = set()
    imp_a, imp_b = [], []
    while len(imp_a) < n_imp:
        need = n_imp - len(imp_a)
        i = rng.integers(0, n_img, 2 * need + 16)
        j = rng.integers(0, n_img, 2 * need + 16)
        for x, y in zip(i.tolist(), j.tolist()):
            if ident_ids[x] == ident_ids[y]:
                continue
            key = (min(x, y), max(x, y))
            if key in seen:
                continue
            seen.add(key)
            imp_a.append(x)
            imp_b.append(y)
            if len(imp_a) == n_imp:
                break
    same = np.concatenate([np.ones(n_gen, bool), np.zeros(n_imp, bool)])
    return Pairs(paths, identities, np.asarray(a + imp_a, np.int64), np.asarray(b + imp_b, np.int64), same, notes)


def read_pairs_csv(csv_path, base: Path) -> Pairs:
    """A user's pair list: header `path_a,path_b,same` (same: 1/0, true/false); paths relative to `base` or absolute.
    The identity of an image is its parent folder's name (used for folds and nothing else)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"pairs file {csv_path} does not exist")
    index: dict[Path, int] = {}
    a, b, same, missing = [], [], [], []
    with open(csv_path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        if header[:3] != ["path_a", "path_b", "same"]:
            raise ValueError(f"{csv_path}: the first line must be 'path_a,path_b,same', got {','.join(header)!r}")
        for line_no, row in enumerate(reader, 2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise ValueError(f"{csv_path}:{line_no}: expected path_a,path_b,same, got {row}")
            label = row[2].strip().lower()
            if label not in ("1", "0", "true", "false"):
                raise ValueError(f"{csv_path}:{line_no}: same must be 1/0 or true/false, got {row[2]!r}")
            ids = []
            for name in row[:2]:
                path = Path(name.strip())
                path = path if path.is_absolute() else base / path
                if not path.is_file():
                    missing.append(f"line {line_no}: {path}")
                ids.append(index.setdefault(path, len(index)))
            a.append(ids[0])
            b.append(ids[1])
            same.append(label in ("1", "true"))
    if missing:
        raise FileNotFoundError(f"{csv_path} names {len(missing)} missing image files: " + "; ".join(missing[:10])
                                + (" ..." if len(missing) > 10 else ""))
    if not same:
        raise ValueError(f"{csv_path}: no pairs")
    paths = list(index)
    return Pairs(paths, [p.parent.name for p in paths], np.asarray(a, np.int64), np.asarray(b, np.int64),
                 np.asarray(same, bool))


def identity_folds(identities: list[str], pairs: Pairs, folds: int, seed: int) -> np.ndarray:
    """Fold of each pair = fold of the identity of its first image; identities are dealt to folds in a seeded
    random order, so no identity's genuine pairs are split across folds."""
    names = sorted(set(identities))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[k]: int(pos % folds) for pos, k in enumerate(order)}
    return np.asarray([fold_of[identities[i]] for i in pairs.a], np.int64)


def _sweep(scores: np.ndarray, same: np.ndarray):
    """For every candidate threshold (accept the top k scores, k = 0..n): thresholds, TP and FP counts."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    tp = np.concatenate([[0], np.cumsum(y)])
    fp = np.concatenate([[0], np.cumsum(~y)])
    # threshold accepting exactly the top k: between s[k-1] and s[k]; only where scores differ
    distinct = np.concatenate([[True], s[1:] != s[:-1], [True]])
    thr = np.concatenate([[np.inf], s])  # accept iff score >= thr[k] accepts the top k (ties permitting)
    return thr[distinct], tp[distinct], fp[distinct]


def _best(scores: np.ndarray, same: np.ndarray, what: str) -> float:
    thr, tp, fp = _sweep(scores, same)
    pos = same.sum()
    if what == "acc":
        value = (tp + (len(same) - pos - fp)) / len(same)
    else:
        value = np.divide(2 * tp, pos + tp + fp, out=np.zeros(len(tp)), where=(pos + tp + fp) > 0)
    k = int(np.argmax(value))  # first maximum: the highest threshold among the best
    if np.isinf(thr[k]):
        return float(np.inf)
    # midway to the next lower score keeps the held-out decision stable against float noise
    lower = thr[k + 1] if k + 1 < len(thr) else thr[k] - 1e-6
    return float((thr[k] + lower) / 2) if np.isfinite(lower) else float(thr[k])


def accuracy_at(scores, same, threshold) -> float:
    return float(np.mean((scores >= threshold) == same))


def f1_at(scores, same, threshold) -> float:
    pred = scores >= threshold
    tp = int(np.sum(pred & same))
    denom = int(same.sum()) + int(pred.sum())
    return 2 * tp / denom if denom else 0.0


def roc(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(far, tar, thresholds) over every distinct threshold, from accepting nothing to accepting everything."""
    thr, tp, fp = _sweep(scores, same)
    return fp / max(1, int((~same).sum())), tp / max(1, int(same.sum())), thr


def eer(far: np.ndarray, tar: np.ndarray) -> float:
    """Equal error rate: where FAR = FRR (linear interpolation between the two ROC points around the crossing)."""
    frr = 1.0 - tar
    diff = far - frr  # increases from -1 (accept nothing) to +1 (accept everything)
    k = int(np.searchsorted(diff, 0.0))
    if k == 0:
        return float(far[0])
    d0, d1 = diff[k - 1], diff[k]
    w = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(far[k - 1] + w * (far[k] - far[k - 1]))


def tar_at_far_with_threshold(scores: np.ndarray, same: np.ndarray, fars=FARS) -> dict[float, dict]:
    """{far: {'tar': value or None, 'threshold': ..., 'impostors': n, 'needed': 3/far}}: TAR at the threshold that
    accepts at most `far x impostors` impostor pairs; None when impostors < 3 / far (not resolved)."""
    imp = np.sort(scores[~same])[::-1]
    gen = scores[same]
    out = {}
    for far in fars:
        needed = int(math.ceil(MIN_IMPOSTORS_PER_FAR / far - 1e-9))
        entry = {"tar": None, "threshold": None, "impostors": int(len(imp)), "needed": needed}
        if len(imp) >= needed:
            k = int(math.floor(far * len(imp) + 1e-9))  # impostors allowed above the threshold
            threshold = float(np.nextafter(imp[k], np.inf)) if k < len(imp) else float(imp[-1])
            entry.update(tar=float(np.mean(gen >= threshold)) if len(gen) else None, threshold=threshold)
        out[far] = entry
    return out


def pair_metrics(scores: np.ndarray, same: np.ndarray, fold_of_pair: np.ndarray, threshold: float | None,
                 fars=FARS) -> dict:
    """Every metric of one level (fractions, not percent) plus curves for the plots."""
    scores = np.asarray(scores, np.float64)
    same = np.asarray(same, bool)
    if not np.isfinite(scores).all():
        raise ValueError("non-finite pair scores: the embeddings are broken")
    accs, f1s, thresholds = [], [], []
    for fold in np.unique(fold_of_pair):
        test = fold_of_pair == fold
        train = ~test
        if not train.any() or not same[train].any() or same[train].all():
            continue
        t_acc = _best(scores[train], same[train], "acc")
        t_f1 = _best(scores[train], same[train], "f1")
        accs.append(accuracy_at(scores[test], same[test], t_acc))
        f1s.append(f1_at(scores[test], same[test], t_f1))
        thresholds.append(t_acc)
    far, tar, thr = roc(scores, same)
    out = {
        "acc": float(np.mean(accs)) if accs else None,
        "f1": float(np.mean(f1s)) if f1s else None,
        "best_threshold": float(np.mean(thresholds)) if thresholds else None,
        "eer": eer(far, tar) if same.any() and (~same).any() else None,
        "tar_at_far": tar_at_far_with_threshold(scores, same, fars),
        "curves": {"far": far, "tar": tar, "thresholds": thr},
        "genuine": scores[same], "impostor": scores[~same],
    }
    if threshold is not None:
        out["f1_at_threshold"] = f1_at(scores, same, threshold)
        out["acc_at_threshold"] = accuracy_at(scores, same, threshold)
    return out


def rank1(gallery: np.ndarray, gallery_ids: np.ndarray, probes: np.ndarray, probe_ids: np.ndarray) -> float | None:
    """Fraction of probes whose most similar gallery embedding (one per identity) is their own identity."""
    if len(probes) == 0 or len(gallery) == 0:
        return None
    best = np.empty(len(probes), np.int64)
    for start in range(0, len(probes), 4096):  # bounded memory
        best[start:start + 4096] = np.argmax(probes[start:start + 4096] @ gallery.T, axis=1)
    return float(np.mean(gallery_ids[best] == probe_ids))
