"""Validation protocols as plug-ins: one module per kind, looked up by `kind` in the `PROTOCOLS` registry.

A validation set is `name -> {kind, path, **options}`; `STANDARD_SETS` are the ones this project knows by name
(the config tree takes them as the default of `validation.protocols`, so adding a set of an existing kind, such as a
second TinyFace-style set, is YAML only). Paths are relative to the validation root unless absolute.
"""

from __future__ import annotations

from pathlib import Path

from validation.protocols import bin_pairs, folders, identification, ijb  # noqa: F401  (imports register the kinds)
from validation.protocols.base import PROTOCOLS, SetEmbeddings, ValidationProtocol

HQ_SETS = ("lfw", "cfp_fp", "agedb_30", "calfw", "cplfw")

STANDARD_SETS: dict[str, dict] = {
    **{name: {"kind": "bin_pairs", "path": f"{name}.bin"} for name in HQ_SETS},
    "tinyface": {"kind": "tinyface", "path": "tinyface", "title": "TinyFace", "ranks": [1, 5, 20]},
    "scface": {"kind": "scface", "path": "scface", "title": "SCface"},
    **{name: {"kind": "ijb", "path": name, "title": title, "feature": "unit", "faceness": False, "one_to_n": False,
              "galleries": galleries}
       for name, title, galleries in (("ijbb", "IJB-B", ["S1", "S2"]), ("ijbc", "IJB-C", ["G1", "G2"]))},
    # your own identity folders (docs/evaluation.md, "Your own faces: the `folders` protocol"):
    # validation=folders validation.root=<folder>
    "folders": {"kind": "folders", "path": ".", "title": "Folders", "levels": ["clean", "blur", "lowres", "jpeg"],
                "degrade": "second", "pairs": None, "genuine_per_identity": 50, "impostor_ratio": 1.0, "seed": 0,
                "threshold": 0.3, "folds": 10},
}


def build_protocol(name: str, spec: dict, root: str | Path | None = None) -> ValidationProtocol:
    """One set from its spec `{kind, path, **options}` (the registry idiom with `kind` as the name key)."""
    return PROTOCOLS.build_from_node(spec, name, key="kind", root=root)


__all__ = ["HQ_SETS", "PROTOCOLS", "STANDARD_SETS", "SetEmbeddings", "ValidationProtocol", "build_protocol"]
