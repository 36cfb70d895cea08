"""What a validation protocol is, and the registry of protocol kinds.

A protocol kind is one class: given a set name, its path and its options it builds the set's torch dataset (items
`(image uint8 [3, 112, 112] BGR, index)`), reads its protocol files (numpy) and turns the set's embeddings into
metrics (percent). The suite only iterates over protocols; nothing outside a kind's module knows what the kind
measures. Register a new kind with `@PROTOCOLS.register("my_kind")`
(docs/extending.md, "Add a validation protocol").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.registry import Registry
from validation.flip_fusion import fuse

PROTOCOLS = Registry("validation protocol")


@dataclass
class SetEmbeddings:
    """One set's embeddings in dataset order: unit embeddings [N, D] and norms [N, 1] of the image and its flip."""

    emb: np.ndarray
    norm: np.ndarray
    emb_flip: np.ndarray | None = None
    norm_flip: np.ndarray | None = None

    def fused(self, mode: str) -> np.ndarray:
        return fuse(self.emb, self.norm, self.emb_flip, self.norm_flip, mode)[0]


class ValidationProtocol:
    """Base of every protocol kind. Subclasses set `default_path` and implement the four methods below.

    `average_group`: a kind whose accuracy enters the HQ average names the group ("hq"); see `validation.report`.
    `title`: the column title in result tables (defaults to the set name).
    """

    default_path = "{name}"  # relative to the validation root; "{name}.bin" for .bin sets
    average_group: str | None = None

    def __init__(self, name: str, path: str | Path | None = None, root: str | Path | None = None,
                 title: str | None = None):
        self.name = name
        self.title = title or name
        relative = Path(path if path is not None else self.default_path.format(name=name))
        self.path = relative if relative.is_absolute() or root is None else Path(root) / relative
        self.check_path()

    def check_path(self) -> None:
        """Fail early, naming the set and the file it needs."""
        if not self.path.exists():
            raise FileNotFoundError(f"validation set {self.name!r}: {self.path} is missing (expected {self.expects}; "
                                    "build it with `python -m dataset.synthetic` or `python -m dataset.prepare`)")

    expects = "a packed set folder (images.rec, images.idx, meta.csv)"

    # --- the kind's job ---------------------------------------------------------------------------------------------
    def dataset(self, swap_rb: bool = False):
        """Torch dataset of the set's images, `(img, index)` items."""
        raise NotImplementedError

    def num_images(self) -> int:
        raise NotImplementedError

    def compute(self, embeddings: SetEmbeddings, fusion: str) -> dict[str, float]:
        """Metrics (percent) of the set from its embeddings, ordered by dataset index."""
        raise NotImplementedError

    def headline(self) -> list[tuple[str, str]]:
        """(metric key, column title) of the metrics worth a column in the compact results table."""
        return []

    def average_keys(self) -> list[str]:
        """Metric keys that enter `average_group`'s average."""
        return []

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """ROC curves {label: (fpr, tpr)} of the last compute, for plots; none by default."""
        return {}

    def pair_scores(self, embeddings: SetEmbeddings, fusion: str):
        """The set's verification pairs as `validation.calibration.PairScores` (similarity scores, labels, subjects
        and qualities where the protocol knows them), for threshold calibration; None = no 1:1 pairs (an
        identification-only set, skipped by calibration)."""
        return None

    def describe(self) -> str:
        """A line printed with the results (what was measured: pair counts, ratios); none by default."""
        return ""

    def artifacts(self, out_dir) -> list[Path]:
        """Files of the last compute written beside the results (pair lists, pictures); none by default."""
        return []


def rgb_to_bgr(img: np.ndarray) -> np.ndarray:
    """Module-level (picklable for spawned DataLoader workers): RGB-stored images back to BGR."""
    return np.ascontiguousarray(img[:, :, ::-1])
