"""The synthetic cache: one folder per preset, generator version, seed and versions of the libraries that shape it.

The folder name is the cache key, so an environment with another OpenCV or numpy builds its own folder instead of
reusing (or replacing) another's. A build is staged in a sibling folder, its `DONE` facts are written last, and the
folder is published with `common.atomic.publish_dir`; a folder is reused only when its `DONE` facts match the key.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from common import atomic

GENERATOR_VERSION = 2  # bump whenever the output of any preset changes (docs/synthetic.md)


def library_versions() -> dict[str, str]:
    """Libraries whose releases can change a build's bytes: OpenCV draws, warps, resizes and JPEG-encodes every
    image; numpy draws every random number and does the geometry."""
    return {"opencv": cv2.__version__, "numpy": np.__version__}


def cache_name(preset: str, seed: int) -> str:
    """e.g. `demo-v2-s0-cv5.1.0-np2.4.6`."""
    libraries = library_versions()
    return f"{preset}-v{GENERATOR_VERSION}-s{int(seed)}-cv{libraries['opencv']}-np{libraries['numpy']}"


def build_facts(preset: str, seed: int, config: dict) -> dict:
    """The head of a build's `DONE` facts: what a reuse is checked against, then the preset's configuration."""
    return {"preset": preset, "seed": seed, "generator_version": GENERATOR_VERSION, "libraries": library_versions(),
            "config": config}


def is_current(folder: Path) -> bool:
    """`folder` holds a complete build of this generator version made with these library versions."""
    try:
        facts = json.loads((folder / "DONE").read_text())
    except (OSError, ValueError):
        return False
    return facts.get("generator_version") == GENERATOR_VERSION and facts.get("libraries") == library_versions()


def open_build(out_dir, preset: str, seed: int) -> tuple[Path, Path | None]:
    """(final folder, fresh staging folder to build in), or (final, None) when a current build is there to reuse.
    Leftovers of a killed build are recovered first."""
    final = Path(out_dir) / cache_name(preset, seed)
    atomic.recover_dir(final)
    if is_current(final):
        return final, None
    return final, atomic.stage_dir(final)


def publish_build(stage: Path, final: Path, facts: dict) -> Path:
    """Write `DONE` (the marker, last) into `stage` and publish it as `final`; a current build another process
    finished first is kept. An incomplete or stale `final` is replaced."""
    atomic.write_json(stage / "DONE", facts, indent=1)
    if is_current(final):
        shutil.rmtree(stage)
        return final
    return atomic.publish_dir(stage, final)
