"""A small level-labelled probe set, rendered on the fly: the same held-out faces at every quality level.

It answers "does the feature norm track image quality on this benchmark?" without touching any preset's output:
nothing is written, and the jobs use indices no preset uses. Identities come from the TinyFace evaluation pool, so
training never saw them; each identity is rendered once per level (same face, same pose seed per level).
"""

from __future__ import annotations

import numpy as np

from dataset.synthetic.builder import PRESETS
from dataset.synthetic.jobs import make_job, pool_base, render_job
from dataset.synthetic.quality import LEVELS, decode_jpeg

PROBE_LEVELS = tuple(LEVELS)  # hq, high, mid, low, tiny
_FIRST_INDEX = 5 * 10**6  # above every index a preset or the sample images use


def quality_probe(identities: int = 16, preset: str = "demo", seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """(aligned 112x112 BGR uint8 images [identities * 5, 112, 112, 3], their quality level names)."""
    pre = PRESETS[preset]
    base = pool_base("tinyface", pre.family_size)
    images, levels = [], []
    for i in range(identities):
        for j, level in enumerate(PROBE_LEVELS):
            job = make_job("tinyface", _FIRST_INDEX + i * len(PROBE_LEVELS) + j, base + i, loose=True, canvas=128,
                           level=level, face_scale=(0.8, 0.95))
            images.append(decode_jpeg(render_job(seed, pre.family_size, pre.sibling_scale, job)["aligned"]))
            levels.append(level)
    return np.stack(images), levels
