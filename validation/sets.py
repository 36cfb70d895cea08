"""Where each validation set lives under a root folder, its protocol (numpy) and its torch dataset.

Layout (contracts): `<root>/<name>.bin` for the HQ five (InsightFace `.bin`, pair k = images 2k, 2k+1) and
`<root>/<name>/` packed sets (images.rec/.idx + meta.csv [+ meta/ protocol files]) for tinyface, scface, ijbb, ijbc.
Protocols are plain numpy; torch is imported only when a dataset is built, so importing this module stays light.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from validation import ALL_SETS, HQ_SETS

PACKED_COLUMNS = {
    "tinyface": ("label", "split"),
    "scface": ("label", "split", "distance"),
    "ijbb": ("template", "media"),
    "ijbc": ("template", "media"),
}


def check_name(name: str) -> str:
    if name not in ALL_SETS:
        raise ValueError(f"unknown validation set {name!r}; known sets: {', '.join(ALL_SETS)}")
    return name


def set_path(root, name: str) -> Path:
    """`<root>/<name>.bin` for HQ sets, `<root>/<name>/` for packed sets; raises if it is not there."""
    check_name(name)
    path = Path(root) / (f"{name}.bin" if name in HQ_SETS else name)
    if not path.exists():
        kind = "InsightFace .bin file" if name in HQ_SETS else "packed set folder (images.rec, images.idx, meta.csv)"
        raise FileNotFoundError(f"validation set {name!r}: {path} is missing (expected a {kind}; build it with "
                                "`python -m dataset.synthetic` or `python -m dataset.prepare`)")
    return path


def ijb_pair_file(set_dir: Path, name: str) -> Path:
    return Path(set_dir) / "meta" / f"{name}_template_pair_label.txt"


def _swap_rb(img: np.ndarray) -> np.ndarray:
    """Module-level (picklable for spawned DataLoader workers): RGB-stored images back to BGR."""
    return np.ascontiguousarray(img[:, :, ::-1])


def build_dataset(root, name: str, swap_rb: bool = False):
    """Torch dataset of one set returning `(img uint8 [3, 112, 112] BGR, index)`."""
    path = set_path(root, name)
    if name in HQ_SETS:
        from dataset.readers import BinPairsDataset

        return BinPairsDataset(path, transform=_swap_rb if swap_rb else None)
    from dataset.evalsets import PackedSetDataset

    return PackedSetDataset(path, swap_rb=swap_rb)


def read_protocol(root, name: str, dataset=None) -> dict:
    """Numpy protocol of a set: HQ -> {'issame'}; packed -> the meta.csv columns (plus, for IJB, the pair list).

    `dataset` (as built by build_dataset) is reused when given, so a `.bin` is not loaded twice.
    """
    path = set_path(root, name)
    if name in HQ_SETS:
        if dataset is not None and hasattr(dataset, "issame"):
            issame = dataset.issame
        else:
            from dataset.convert import load_bin

            _, issame = load_bin(path)
        return {"issame": np.asarray(issame, dtype=bool), "num_images": 2 * len(issame)}
    if dataset is not None and hasattr(dataset, "packed"):
        meta = dataset.packed.meta
    else:
        from dataset.evalsets import PackedSet

        meta = PackedSet(path).meta
    missing = [c for c in PACKED_COLUMNS[name] if c not in meta]
    if missing:
        raise ValueError(f"{path / 'meta.csv'}: set {name!r} needs columns {missing}")
    protocol = dict(meta)
    protocol["num_images"] = len(meta["index"])
    if name.startswith("ijb"):
        pair_file = ijb_pair_file(path, name)
        if not pair_file.is_file():
            raise FileNotFoundError(f"IJB set {name!r}: pair list {pair_file} is missing")
        protocol["pair_file"] = pair_file
    return protocol
