"""Kinds `tinyface` (closed-set CMC rank-k with distractors) and `scface` (rank-1 per distance d1/d2/d3).

Metrics `<name>/rank_<k>` and `<name>/d<k>` (docs/evaluation.md, "TinyFace and SCface identification").
"""

from __future__ import annotations

from validation import identification
from validation.protocols.base import PROTOCOLS, SetEmbeddings
from validation.protocols.packed import PackedProtocol


@PROTOCOLS.register("tinyface")
class TinyFaceProtocol(PackedProtocol):
    columns = ("label", "split")

    def __init__(self, name, path=None, root=None, title=None, ranks=(1, 5, 20),
                 chunk_size: int = identification.DEFAULT_CHUNK):
        super().__init__(name, path, root, title)
        self.ranks = tuple(int(r) for r in ranks)
        self.chunk_size = int(chunk_size)

    def compute(self, embeddings: SetEmbeddings, fusion: str) -> dict[str, float]:
        meta = self.meta
        return identification.tinyface_metrics(embeddings.fused(fusion), meta["label"], meta["split"], self.ranks,
                                               self.chunk_size, prefix=self.name)

    def headline(self):
        first, *rest = self.ranks
        return [(f"{self.name}/rank_{first}", f"{self.title} r{first}")] + [
            (f"{self.name}/rank_{r}", f"r{r}") for r in rest]


@PROTOCOLS.register("scface")
class SCfaceProtocol(PackedProtocol):
    columns = ("label", "split", "distance")

    def compute(self, embeddings: SetEmbeddings, fusion: str) -> dict[str, float]:
        meta = self.meta
        return identification.scface_metrics(embeddings.fused(fusion), meta["label"], meta["split"],
                                             meta["distance"], prefix=self.name)

    def headline(self):
        return [(f"{self.name}/d1", f"{self.title} d1"), (f"{self.name}/d2", "d2"), (f"{self.name}/d3", "d3")]
