"""Kind `bin_pairs`: 10-fold verification accuracy on an InsightFace `.bin` (LFW, CFP-FP, AgeDB-30, CALFW, CPLFW).

Metric `val/<name>_acc`; these accuracies make the HQ average
(docs/evaluation.md, "10-fold verification on the InsightFace `.bin` sets"; docs/evaluation.md, "Averages").
"""

from __future__ import annotations

import numpy as np

from validation.flip_fusion import fuse
from validation.protocols.base import PROTOCOLS, SetEmbeddings, ValidationProtocol, rgb_to_bgr
from validation.verification import verification_accuracy


@PROTOCOLS.register("bin_pairs")
class BinPairsProtocol(ValidationProtocol):
    default_path = "{name}.bin"
    expects = "an InsightFace .bin file"
    average_group = "hq"

    def __init__(self, name, path=None, root=None, title=None, folds: int = 10):
        super().__init__(name, path, root, title)
        self.folds = int(folds)
        self._dataset = None
        self._issame = None

    def dataset(self, swap_rb: bool = False):
        from dataset.readers import BinPairsDataset

        self._dataset = BinPairsDataset(self.path, transform=rgb_to_bgr if swap_rb else None)
        return self._dataset

    def issame(self) -> np.ndarray:
        if self._issame is None:
            if self._dataset is not None:  # the dataset already holds the pickle: do not load it twice
                issame = self._dataset.issame
            else:
                from dataset.formats import load_bin

                issame = load_bin(self.path)[1]
            self._issame = np.asarray(issame, dtype=bool)
        return self._issame

    def num_images(self) -> int:
        return 2 * len(self.issame())

    def compute(self, embeddings: SetEmbeddings, fusion: str) -> dict[str, float]:
        return {f"val/{self.name}_acc": verification_accuracy(embeddings.fused(fusion), self.issame(), self.folds)}

    def pair_scores(self, embeddings: SetEmbeddings, fusion: str):
        """Cosine similarity of the fused unit embeddings of pair (2k, 2k+1) (= 1 - dist / 2 of the 10-fold rule);
        a side's quality is its fused feature norm. A .bin names no identities: pair bootstrap."""
        from validation.calibration import PairScores

        unit, norm = fuse(embeddings.emb, embeddings.norm, embeddings.emb_flip, embeddings.norm_flip, fusion)
        issame = self.issame()
        n = min(len(issame), unit.shape[0] // 2)
        scores = np.einsum("ij,ij->i", unit[0:2 * n:2].astype(np.float32), unit[1:2 * n:2].astype(np.float32))
        norm = np.asarray(norm, dtype=np.float32).reshape(-1)
        return PairScores(self.name, scores, issame[:n], quality_a=norm[0:2 * n:2], quality_b=norm[1:2 * n:2],
                          source=f"{self.path.name}: consecutive image pairs, no identities (pair bootstrap)")

    def headline(self):
        return [(f"val/{self.name}_acc", self.title)]

    def average_keys(self):
        return [f"val/{self.name}_acc"]
