"""ValidationSuite: the enabled validation sets (protocol plug-ins), their datasets and their metrics.

The suite knows no set by kind: it builds each protocol from its spec, hands out the datasets in order, and turns
each set's embeddings into metrics through the set's own protocol, then adds the averages (`validation.report`).
`compute(set_idx, emb, norm, emb_flip, norm_flip)` takes numpy unit embeddings [N, D] and norms [N, 1] of image and
flip, ordered by dataset index (gathered and de-duplicated by the caller: `validation.gather`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from validation import report
from validation.flip_fusion import FUSION_MODES
from validation.protocols import STANDARD_SETS, SetEmbeddings, ValidationProtocol, build_protocol

log = logging.getLogger(__name__)


def resolve_specs(sets, catalog: Mapping | None = None) -> dict[str, dict]:
    """Enabled set names (or a mapping name -> spec) -> {name: spec}, specs taken from `catalog` (default: the
    standard sets); an unknown name raises, listing the known ones."""
    catalog = STANDARD_SETS if catalog is None else catalog
    if isinstance(sets, Mapping):
        return {str(name): dict(spec) for name, spec in sets.items()}
    names = [str(s) for s in sets]
    if len(set(names)) != len(names):
        raise ValueError(f"validation sets listed twice: {names}")
    unknown = [n for n in names if n not in catalog]
    if unknown:
        raise ValueError(f"unknown validation set(s) {unknown}; known sets: {', '.join(catalog)} (define a new one "
                         "under validation.protocols.<name>: {kind, path, options})")
    return {n: dict(catalog[n]) for n in names}


class ValidationSuite:
    """The validation sets `sets` under `root`.

    sets: names of known sets (`catalog`, default `validation.protocols.STANDARD_SETS`), a mapping
    name -> {kind, path, **options}, or ready `ValidationProtocol` objects. `fusion`: flip fusion mode of every set;
    `swap_rb`: sets stored RGB. A protocol's options (e.g. the IJB feature) are in its spec.
    """

    def __init__(self, sets, root=None, fusion: str = "pre_norm_add", swap_rb: bool = False,
                 catalog: Mapping | None = None):
        if fusion not in FUSION_MODES:
            raise ValueError(f"unknown fusion {fusion!r}; choose one of {FUSION_MODES}")
        self.root = None if root is None else Path(root)
        self.fusion, self.swap_rb = fusion, swap_rb
        sets = list(sets) if not isinstance(sets, Mapping) else sets
        if sets and all(isinstance(s, ValidationProtocol) for s in sets):
            self.protocols = list(sets)
        else:
            self.protocols = [build_protocol(name, spec, self.root)
                              for name, spec in resolve_specs(sets, catalog).items()]
        self.names = [p.name for p in self.protocols]
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"validation sets listed twice: {self.names}")
        self._datasets = None

    @classmethod
    def from_config(cls, node, root) -> ValidationSuite | None:
        """From the `validation` config node: `sets` (enabled names) looked up in `protocols`; None if no set."""
        if not node.sets:
            return None
        catalog = {name: dict(spec) for name, spec in node.protocols.items()}
        return cls(list(node.sets), root, fusion=node.fusion, swap_rb=node.swap_rb, catalog=catalog)

    # --- data ------------------------------------------------------------------------------------------------------
    def datasets(self) -> list:
        """One torch dataset per enabled set, same order as `names`; built once and cached."""
        if self._datasets is None:
            self._datasets = [p.dataset(swap_rb=self.swap_rb) for p in self.protocols]
        return self._datasets

    # --- metrics ---------------------------------------------------------------------------------------------------
    def compute(self, set_idx: int, emb, norm, emb_flip=None, norm_flip=None) -> dict[str, float]:
        """Metrics of one set (no averages: those need every set, see `evaluate`)."""
        protocol = self.protocols[set_idx]
        expected = protocol.num_images()
        if emb.shape[0] != expected:
            raise ValueError(f"validation set {protocol.name!r}: {emb.shape[0]} embeddings for {expected} images")
        for what, array in (("embeddings", emb), ("norms", norm), ("flip embeddings", emb_flip),
                            ("flip norms", norm_flip)):
            if array is not None and not np.isfinite(array).all():
                rows = np.flatnonzero(~np.isfinite(np.asarray(array)).reshape(len(array), -1).all(1))
                raise ValueError(f"validation set {protocol.name!r}: {len(rows)} images have non-finite {what} "
                                 f"(first at index {rows[0]}); the model's weights or its inputs are broken, and "
                                 "metrics of such embeddings would mean nothing")
        return protocol.compute(SetEmbeddings(emb, norm, emb_flip, norm_flip), self.fusion)

    def evaluate(self, per_set: Iterable[tuple]) -> dict[str, float]:
        """Every set's metrics plus the averages. `per_set` yields (emb, norm, emb_flip, norm_flip) per set in
        order; a generator keeps only one set's embeddings in memory at a time."""
        metrics: dict[str, float] = {}
        for set_idx, arrays in enumerate(per_set):
            metrics.update(self.compute(set_idx, *arrays))
        metrics.update(self.averages(metrics))
        return metrics

    def averages(self, metrics: dict) -> dict[str, float]:
        hq_keys = [k for p in self.protocols if p.average_group == "hq" for k in p.average_keys()]
        return report.averages(metrics, hq_keys)

    def hq_avg(self, metrics: dict) -> float | None:
        return {**metrics, **self.averages(metrics)}.get("val/hq_avg")

    def all_avg(self, metrics: dict) -> float | None:
        return {**metrics, **self.averages(metrics)}.get("val/all_avg")

    def curves(self) -> dict:
        """ROC curves of the last computation, {set name: (fpr, tpr)} (IJB sets)."""
        out = {}
        for p in self.protocols:
            out.update(p.curves())
        return out

    def describe(self) -> str:
        """What each set measured, one line per set that says something (pair counts, ratios)."""
        return "\n".join(line for p in self.protocols if (line := p.describe()))

    def write_artifacts(self, out_dir) -> list[Path]:
        """Every set's files of the last computation (pair lists, reports, pictures) into `out_dir`."""
        return [path for p in self.protocols for path in p.artifacts(out_dir)]

    def roc(self, name: str):
        return self.curves().get(name)

    def headline(self) -> list[tuple[str, str]]:
        """Columns of the compact table: the HQ sets, HQ avg, every other set, All avg."""
        hq = [c for p in self.protocols if p.average_group == "hq" for c in p.headline()]
        rest = [c for p in self.protocols if p.average_group != "hq" for c in p.headline()]
        return hq + [("val/hq_avg", "HQ avg")] + rest + [("val/all_avg", "All avg")]

    def summary(self, metrics: dict) -> str:
        """Compact markdown table of the headline metrics present (percent)."""
        return report.headline_table({**metrics, **self.averages(metrics)}, self.headline())
