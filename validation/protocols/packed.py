"""Shared part of the kinds stored as packed sets: `<root>/<name>/` = images.rec/.idx + meta.csv (+ meta/ files).

The folder layout is (docs/formats.md, "Packed evaluation sets"); each kind names the meta.csv columns it needs.
"""

from __future__ import annotations

from validation.protocols.base import ValidationProtocol


class PackedProtocol(ValidationProtocol):
    columns: tuple[str, ...] = ()

    def __init__(self, name, path=None, root=None, title=None):
        super().__init__(name, path, root, title)
        self._dataset = None
        self._meta = None

    def dataset(self, swap_rb: bool = False):
        from dataset.evalsets import PackedSetDataset

        self._dataset = PackedSetDataset(self.path, swap_rb=swap_rb)
        return self._dataset

    @property
    def meta(self) -> dict:
        """meta.csv columns (numpy), checked for the columns this kind needs."""
        if self._meta is None:
            if self._dataset is not None:
                meta = self._dataset.packed.meta
            else:
                from dataset.evalsets import PackedSet

                meta = PackedSet(self.path).meta
            missing = [c for c in self.columns if c not in meta]
            if missing:
                raise ValueError(f"{self.path / 'meta.csv'}: set {self.name!r} ({type(self).__name__}) needs "
                                 f"columns {missing}")
            self._meta = meta
        return self._meta

    def num_images(self) -> int:
        return len(self.meta["index"])
