"""Kind `ijb`: IJB-B / IJB-C template 1:1 verification (TAR@FAR), optionally 1:N identification.

Protocol files in `<set>/meta/`: `<prefix>_template_pair_label.txt`, and for 1:N `<prefix>_1N_probe_mixed.csv` +
`<prefix>_1N_gallery_<G>.csv` (prefix defaults to the set name). Metrics `<name>/tar_far_<far>` and
`<name>/1n_<gallery>_<metric>` (docs/evaluation.md, "IJB-B / IJB-C template verification").
"""

from __future__ import annotations

import logging

from validation import ijb
from validation.protocols.base import PROTOCOLS, SetEmbeddings
from validation.protocols.packed import PackedProtocol

log = logging.getLogger(__name__)


@PROTOCOLS.register("ijb")
class IJBProtocol(PackedProtocol):
    """Options: `feature` ('unit' = QGFace's in-training path, 'norm' = AdaFace's offline script / InsightFace),
    `faceness` (multiply by the detector score, as InsightFace does), `fars`, `one_to_n` (also 1:N when the csv files
    are present), `galleries` (the 1:N gallery names: S1, S2 for IJB-B; G1, G2 for IJB-C), `prefix`."""

    columns = ("template", "media")

    def __init__(self, name, path=None, root=None, title=None, feature: str = "unit", faceness: bool = False,
                 fars=ijb.FARS, one_to_n: bool = False, galleries=("S1", "S2"), prefix: str | None = None,
                 headline_far: float = 1e-4):
        super().__init__(name, path, root, title)
        if feature not in ijb.IMAGE_FEATURES:
            raise ValueError(f"validation set {name!r}: unknown feature {feature!r}; choose one of "
                             f"{ijb.IMAGE_FEATURES}")
        self.feature, self.faceness, self.one_to_n = feature, bool(faceness), bool(one_to_n)
        self.fars = tuple(float(f) for f in fars)
        self.galleries = tuple(galleries)
        self.prefix = prefix or name
        self.headline_far = float(headline_far)
        self.pair_file = self.path / "meta" / f"{self.prefix}_template_pair_label.txt"
        self._pairs = None
        self._roc = None

    def dataset(self, swap_rb: bool = False):
        dataset = super().dataset(swap_rb)
        self.check_pairs()  # before any image is embedded
        return dataset

    def check_pairs(self) -> None:
        """Every template the pair list names must have images in meta.csv; raises naming the file and template."""
        import numpy as np

        p1, p2, _ = self.pairs()
        known = np.unique(self.meta["template"])
        unknown = np.setdiff1d(np.union1d(p1, p2), known)
        if len(unknown):
            raise ValueError(f"IJB set {self.name!r}: {self.pair_file} names {len(unknown)} templates that have no "
                             f"image in {self.path / 'meta.csv'} (first: {unknown[0]}); wrong pair file for this set?")

    def pairs(self) -> tuple:
        """(template 1, template 2, label) of the pair list, read once (8M lines for IJB-B)."""
        if self._pairs is None:
            if not self.pair_file.is_file():
                raise FileNotFoundError(f"IJB set {self.name!r}: pair list {self.pair_file} is missing")
            self._pairs = ijb.read_template_pair_list(self.pair_file)
        return self._pairs

    def compute(self, embeddings: SetEmbeddings, fusion: str) -> dict[str, float]:
        template_feats, unique_templates, scores = self._template_scores(embeddings, fusion)
        label = self.pairs()[2]
        fpr, tpr, _ = ijb.roc_curve(label, scores)
        self._roc = (fpr, tpr)
        tar = ijb.tar_at_fpr(fpr, tpr, self.fars)
        out = {f"{self.name}/tar_far_{ijb.far_name(f)}": v * 100 for f, v in tar.items()}
        if self.one_to_n:
            out.update(self._compute_1n(template_feats, unique_templates))
        return out

    def template_subjects(self, unique_templates):
        """Subject of each template: the 1:N csv files where they name it, else meta.csv's `label` column (the
        synthetic sets); None (pair bootstrap) when some template stays without one. -> (subjects | None, note)."""
        import numpy as np

        subjects = np.full(len(unique_templates), -1, dtype=np.int64)
        sources = []
        meta = self.meta
        if "label" in meta:
            rows = ijb.template_rows(unique_templates, meta["template"])
            subjects[rows] = np.asarray(meta["label"], dtype=np.int64)
            sources.append("meta.csv label column")
        for csv in sorted((self.path / "meta").glob(f"{self.prefix}_1N_*.csv")):
            tids, sids = ijb.read_1n_list(csv)
            known = np.isin(tids, unique_templates)
            subjects[np.searchsorted(unique_templates, tids[known])] = sids[known]
            sources.append(csv.name)
        if (subjects < 0).any():
            return None, (f"{int((subjects < 0).sum())} templates have no subject in "
                          f"{', '.join(sources) or 'any file'}: pair bootstrap")
        return subjects, "subjects from " + " + ".join(sources)

    def pair_scores(self, embeddings: SetEmbeddings, fusion: str):
        """Template pair scores of the 1:1 list; a template's quality is the mean fused norm of its images."""
        import numpy as np

        from validation.calibration import PairScores
        from validation.flip_fusion import fuse

        meta, e = self.meta, embeddings
        _, unique_templates, scores = self._template_scores(embeddings, fusion)
        p1, p2, label = self.pairs()
        _, fused_norm = fuse(e.emb, e.norm, e.emb_flip, e.norm_flip, fusion)
        t_idx = ijb.template_rows(unique_templates, meta["template"])
        quality = (np.bincount(t_idx, weights=np.asarray(fused_norm, np.float64).reshape(-1),
                               minlength=len(unique_templates)) / np.bincount(t_idx, minlength=len(unique_templates)))
        r1, r2 = ijb.template_rows(unique_templates, p1), ijb.template_rows(unique_templates, p2)
        subjects, note = self.template_subjects(unique_templates)
        sa, sb = (None, None) if subjects is None else (subjects[r1], subjects[r2])
        return PairScores(self.name, scores, label == 1, sa, sb, quality[r1].astype(np.float32),
                          quality[r2].astype(np.float32), source=f"{self.pair_file.name}; {note}")

    def _template_scores(self, embeddings: SetEmbeddings, fusion: str):
        """(template features, sorted template ids, score of each pair of the 1:1 list)."""
        meta = self.meta
        self.pairs()  # a missing pair list fails before any scoring
        faceness = None
        if self.faceness:
            if "faceness" not in meta:
                raise ValueError(f"{self.name}: faceness=true but {self.path / 'meta.csv'} has no faceness column")
            faceness = meta["faceness"]
        e = embeddings
        feats = ijb.image_features(e.emb, e.norm, e.emb_flip, e.norm_flip, self.feature, fusion, faceness)
        template_feats, unique_templates = ijb.image2template_feature(feats, meta["template"], meta["media"])
        del feats
        p1, p2, _ = self.pairs()
        return template_feats, unique_templates, ijb.verification(template_feats, unique_templates, p1, p2)

    def _compute_1n(self, template_feats, unique_templates) -> dict[str, float]:
        meta_dir = self.path / "meta"
        probe_file = meta_dir / f"{self.prefix}_1N_probe_mixed.csv"
        if not probe_file.is_file():
            log.warning("%s: 1:N skipped, %s is missing", self.name, probe_file)
            return {}
        probe_tids, probe_sids = ijb.read_1n_list(probe_file)
        out = {}
        for gallery in self.galleries:
            gallery_file = meta_dir / f"{self.prefix}_1N_gallery_{gallery}.csv"
            if not gallery_file.is_file():
                continue
            gal_tids, gal_sids = ijb.read_1n_list(gallery_file)
            try:
                res = ijb.identification_1n(template_feats, unique_templates, gal_tids, gal_sids, probe_tids,
                                            probe_sids)
            except KeyError as e:
                log.warning("%s 1:N %s skipped: %s", self.name, gallery, e)
                continue
            out.update({f"{self.name}/1n_{gallery.lower()}_{k}": v for k, v in res.items()})
        return out

    def headline(self):
        return [(f"{self.name}/tar_far_{ijb.far_name(self.headline_far)}",
                 f"{self.title} {ijb.far_name(self.headline_far)}")]

    def curves(self):
        return {} if self._roc is None else {self.name: self._roc}
