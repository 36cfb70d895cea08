"""ValidationSuite: the enabled validation sets under one root folder, their datasets and their metrics.

`compute(set_idx, emb, norm, emb_flip, norm_flip)` takes numpy unit embeddings [N, D] and norms [N, 1] of image and
flip, ordered by dataset index (gathered and de-duplicated by the caller) and returns metrics in percent:
`val/<hq>_acc` (and `val/hq_avg` with the last enabled HQ set), `tinyface/rank_{1,5,20}`, `scface/d{1,2,3}`,
`<ijb>/tar_far_<far>`. `all_avg(metrics)` is the QGFace README's "All Avg.".
Also here: markdown table writer and ROC-curve PNG (matplotlib, Agg backend).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from validation import HQ_SETS, identification, ijb
from validation.fusion import FUSION_MODES, fuse
from validation.sets import check_name, read_protocol, set_path
from validation.verification import verification_accuracy

log = logging.getLogger(__name__)

ALL_AVG_KEYS = ("scface/d1", "scface/d2", "scface/d3", "tinyface/rank_1", "ijbb/tar_far_1e-4", "val/hq_avg")
# compact summary: (metric key, column title)
HEADLINE = [(f"val/{s}_acc", s) for s in HQ_SETS] + [
    ("val/hq_avg", "HQ avg"), ("tinyface/rank_1", "TinyFace r1"), ("tinyface/rank_5", "r5"),
    ("tinyface/rank_20", "r20"),
    ("scface/d1", "SCface d1"), ("scface/d2", "d2"), ("scface/d3", "d3"), ("ijbb/tar_far_1e-4", "IJB-B 1e-4"),
    ("ijbc/tar_far_1e-4", "IJB-C 1e-4"), ("val/all_avg", "All avg"),
]


def hq_avg(metrics: dict) -> float | None:
    """Mean accuracy over the HQ sets present in `metrics` (the five when all are enabled)."""
    values = [metrics[f"val/{s}_acc"] for s in HQ_SETS if f"val/{s}_acc" in metrics]
    return float(np.mean(values)) if values else None


def all_avg(metrics: dict) -> float | None:
    """Mean of SCface d1, d2, d3, TinyFace rank-1, IJB-B TAR@1e-4 and HQ avg; None unless all six are there."""
    values = dict(metrics)
    if "val/hq_avg" not in values and hq_avg(values) is not None:
        values["val/hq_avg"] = hq_avg(values)
    if any(k not in values for k in ALL_AVG_KEYS):
        return None
    return float(np.mean([values[k] for k in ALL_AVG_KEYS]))


def markdown_table(header: list[str], rows: list[list], floatfmt: str = ".2f") -> str:
    """A markdown table; floats formatted with `floatfmt`, None shown as '-'."""
    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_markdown_table(path, header: list[str], rows: list[list], title: str | None = None) -> Path:
    path = Path(path)
    text = (f"# {title}\n\n" if title else "") + markdown_table(header, rows)
    path.write_text(text)
    return path


def metrics_markdown(metrics: dict) -> str:
    """Every metric as `| metric | value |`, sorted by name."""
    return markdown_table(["metric", "value"], [[k, float(v)] for k, v in sorted(metrics.items())])


def save_roc_png(curves: dict, path, title: str = "1:1 verification ROC", fars=ijb.FARS) -> Path:
    """Plot ROC curves {label: (fpr, tpr)} on a log FAR axis into a PNG (matplotlib Agg, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label, (fpr, tpr) in curves.items():
        ax.plot(np.clip(fpr, min(fars) / 10, 1.0), np.asarray(tpr) * 100, label=label)
    ax.set(xscale="log", xlim=(min(fars), 1.0), ylim=(0, 100), xlabel="FAR", ylabel="TAR (%)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


class ValidationSuite:
    """The validation sets `sets` (names in validation.ALL_SETS) found under `root`.

    Options: `fusion` (flip fusion mode), `ijb_feature` ('unit' = QGFace's in-training IJB-B path, 'norm' = AdaFace's
    offline script / InsightFace), `ijb_faceness` (multiply by the detector score as InsightFace does), `ijb_fars`,
    `ijb_1n` (also 1:N when the gallery/probe csv files are present), `tinyface_ranks`, `swap_rb` (sets stored RGB),
    `chunk_size` (gallery chunk of the rank-k scoring).
    """

    def __init__(self, sets, root, fusion: str = "pre_norm_add", ijb_feature: str = "unit", ijb_faceness: bool = False,
                 ijb_fars=ijb.FARS, ijb_1n: bool = False, tinyface_ranks=(1, 5, 20), swap_rb: bool = False,
                 chunk_size: int = identification.DEFAULT_CHUNK):
        self.names = [check_name(s) for s in sets]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"validation sets listed twice: {self.names}")
        if fusion not in FUSION_MODES:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSION_MODES}")
        if ijb_feature not in ijb.IMAGE_FEATURES:
            raise ValueError(f"unknown ijb_feature {ijb_feature!r}; choose one of {ijb.IMAGE_FEATURES}")
        self.root = Path(root)
        self.fusion, self.ijb_feature, self.ijb_faceness = fusion, ijb_feature, ijb_faceness
        self.ijb_fars, self.ijb_1n = tuple(float(f) for f in ijb_fars), ijb_1n
        self.tinyface_ranks, self.swap_rb, self.chunk_size = tuple(tinyface_ranks), swap_rb, chunk_size
        for name in self.names:
            set_path(self.root, name)  # fail early, naming the missing file
        self._datasets = None
        self._protocols: dict[str, dict] = {}
        self._pairs: dict[str, tuple] = {}
        self._roc: dict[str, tuple] = {}
        self._hq_acc: dict[str, float] = {}

    # --- data ------------------------------------------------------------------------------------------------------
    def datasets(self) -> list:
        """One torch dataset per enabled set, same order as `names`; built once and cached."""
        if self._datasets is None:
            from validation.sets import build_dataset

            self._datasets = [build_dataset(self.root, n, swap_rb=self.swap_rb) for n in self.names]
        return self._datasets

    def protocol(self, name: str) -> dict:
        if name not in self._protocols:
            dataset = self._datasets[self.names.index(name)] if self._datasets is not None else None
            self._protocols[name] = read_protocol(self.root, name, dataset)
        return self._protocols[name]

    def _ijb_pairs(self, name: str) -> tuple:
        if name not in self._pairs:  # the pair list (8M lines for IJB-B) is read once per suite
            self._pairs[name] = ijb.read_template_pair_list(self.protocol(name)["pair_file"])
        return self._pairs[name]

    # --- metrics ---------------------------------------------------------------------------------------------------
    def compute(self, set_idx: int, emb, norm, emb_flip=None, norm_flip=None) -> dict[str, float]:
        name = self.names[set_idx]
        proto = self.protocol(name)
        emb = np.asarray(emb, dtype=np.float32)
        if emb.shape[0] != proto["num_images"]:
            raise ValueError(f"validation set {name!r}: {emb.shape[0]} embeddings for {proto['num_images']} images")
        if name.startswith("ijb"):
            return self._compute_ijb(name, proto, emb, norm, emb_flip, norm_flip)
        fused, _ = fuse(emb, norm, emb_flip, norm_flip, self.fusion)
        if name in HQ_SETS:
            acc = verification_accuracy(fused, proto["issame"])
            self._hq_acc[name] = acc
            out = {f"val/{name}_acc": acc}
            hq_enabled = [n for n in self.names if n in HQ_SETS]
            if name == hq_enabled[-1] and all(n in self._hq_acc for n in hq_enabled):
                out["val/hq_avg"] = float(np.mean([self._hq_acc[n] for n in hq_enabled]))
            return out
        if name == "tinyface":
            return identification.tinyface_metrics(fused, proto["label"], proto["split"], self.tinyface_ranks,
                                                   self.chunk_size)
        return identification.scface_metrics(fused, proto["label"], proto["split"], proto["distance"])

    def _compute_ijb(self, name, proto, emb, norm, emb_flip, norm_flip) -> dict[str, float]:
        faceness = None
        if self.ijb_faceness:
            if "faceness" not in proto:
                raise ValueError(f"{name}: ijb_faceness=True but meta.csv has no faceness column")
            faceness = proto["faceness"]
        feats = ijb.image_features(emb, norm, emb_flip, norm_flip, self.ijb_feature, self.fusion, faceness)
        template_feats, unique_templates = ijb.image2template_feature(feats, proto["template"], proto["media"])
        del feats
        p1, p2, label = self._ijb_pairs(name)
        scores = ijb.verification(template_feats, unique_templates, p1, p2)
        fpr, tpr, _ = ijb.roc_curve(label, scores)
        self._roc[name] = (fpr, tpr)
        out = {f"{name}/tar_far_{ijb.far_name(f)}": v * 100 for f, v in ijb.tar_at_fpr(fpr, tpr, self.ijb_fars).items()}
        if self.ijb_1n:
            out.update(self._compute_1n(name, template_feats, unique_templates))
        return out

    def _compute_1n(self, name, template_feats, unique_templates) -> dict[str, float]:
        meta = set_path(self.root, name) / "meta"
        galleries = ("S1", "S2") if name == "ijbb" else ("G1", "G2")
        probe_file = meta / f"{name}_1N_probe_mixed.csv"
        if not probe_file.is_file():
            log.warning("%s: 1:N skipped, %s is missing", name, probe_file)
            return {}
        probe_tids, probe_sids = ijb.read_1n_list(probe_file)
        out = {}
        for gallery in galleries:
            gallery_file = meta / f"{name}_1N_gallery_{gallery}.csv"
            if not gallery_file.is_file():
                continue
            gal_tids, gal_sids = ijb.read_1n_list(gallery_file)
            try:
                res = ijb.identification_1n(template_feats, unique_templates, gal_tids, gal_sids, probe_tids,
                                            probe_sids)
            except KeyError as e:
                log.warning("%s 1:N %s skipped: %s", name, gallery, e)
                continue
            out.update({f"{name}/1n_{gallery.lower()}_{k}": v for k, v in res.items()})
        return out

    def roc(self, name: str):
        """(fpr, tpr) of the last IJB computation of `name`, or None."""
        return self._roc.get(name)

    def hq_avg(self, metrics: dict) -> float | None:
        return hq_avg(metrics)

    def all_avg(self, metrics: dict) -> float | None:
        return all_avg(metrics)

    def summary(self, metrics: dict) -> str:
        """Compact markdown table of the headline metrics present (percent)."""
        values = dict(metrics)
        if "val/hq_avg" not in values and hq_avg(values) is not None:
            values["val/hq_avg"] = hq_avg(values)
        if "val/all_avg" not in values and all_avg(values) is not None:
            values["val/all_avg"] = all_avg(values)
        cols = [(k, title) for k, title in HEADLINE if k in values]
        if not cols:
            return "(no validation metrics)"
        return markdown_table([t for _, t in cols], [[float(values[k]) for k, _ in cols]]).rstrip("\n")
