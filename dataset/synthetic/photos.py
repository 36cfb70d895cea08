"""Synthetic "your own photos": unaligned loose crops in identity folders plus a 5-point landmark file.

    python -m dataset.synthetic --out data/synthetic --preset photos        # or photos_tiny (tests)

``build_photos(out_dir, preset, seed)`` returns ``<out_dir>/<cache_name>/`` (``cache.cache_name``) holding::

    train/<identity>/<n>.jpg     identities to fine-tune on (loose crops, mixed quality)
    eval/<identity>/<n>.jpg      other identities, to evaluate on (disjoint from train)
    landmarks_train.txt          '<identity>/<n>.jpg x1 y1 ... x5 y5' per image (python -m dataset.prepare folders
    landmarks_eval.txt           --landmarks FILE), points in the captured image's pixels
    DONE                         build facts (JSON), written last

Identities come from their own pool (set code ``photos``), disjoint from every benchmark preset's identities.
Images are rendered like the benchmark's loose crops (``dataset.synthetic.jobs.render_job``) and captured at a mix
of quality levels (``dataset.synthetic.quality.LEVELS``). (docs/synthetic.md, "Photo presets: your-own-faces
folders (`dataset/synthetic/photos.py`)")
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from common import atomic
from dataset.synthetic.cache import build_facts, open_build, publish_build
from dataset.synthetic.jobs import Renderer, make_job, pool_base
from dataset.synthetic.render import keyed_rng


@dataclass(frozen=True)
class PhotoPreset:
    train_ids: int
    train_images: int  # per identity
    eval_ids: int
    eval_images: int
    canvas: int = 160  # loose crop side before capture (the face covers 45-70 % of it)
    family_size: int = 3
    sibling_scale: float = 2.5


PHOTO_PRESETS = {
    "photos_tiny": PhotoPreset(train_ids=6, train_images=5, eval_ids=6, eval_images=4, canvas=144),
    "photos": PhotoPreset(train_ids=60, train_images=10, eval_ids=150, eval_images=6),
}
# capture quality of a photo: share of each level (hq = full resolution; high 24-32 px, mid 16-24, low 10-16 px faces)
LEVEL_MIX = (("hq", 0.4), ("high", 0.25), ("mid", 0.2), ("low", 0.15))
EVAL_OFFSET = 300_000  # eval identities start here in the photos pool (a family boundary: a multiple of 3)


def plan_photos(pre: PhotoPreset, seed: int) -> list[dict]:
    """Render jobs of both splits; each carries its split, identity folder name and file name."""
    base = pool_base("photos", pre.family_size)
    r = keyed_rng(seed, 900)
    jobs = []
    for split, n_ids, per_id, offset in (("train", pre.train_ids, pre.train_images, 0),
                                         ("eval", pre.eval_ids, pre.eval_images, EVAL_OFFSET)):
        for k in range(n_ids):
            for n in range(per_id):
                u = r.uniform()
                level = next(name for name, cum in _cumulative(LEVEL_MIX) if u < cum)
                pose = "wide" if r.uniform() < 0.15 else "normal"
                jobs.append(make_job("photos", len(jobs), base + offset + k, loose=True, canvas=pre.canvas,
                                     level=level, pose=pose, face_scale=(0.65, 1.0), split=split,
                                     folder=f"{'person' if split == 'train' else 'guest'}{k:04d}", name=f"{n:02d}.jpg"))
    return jobs


def _cumulative(mix):
    total = 0.0
    for name, share in mix:
        total += share
        yield name, total if name != mix[-1][0] else 1.01


def identities_used(preset: str, seed: int = 0) -> dict[str, set[int]]:
    jobs = plan_photos(PHOTO_PRESETS[preset], seed)
    return {split: {j["ident"] for j in jobs if j["split"] == split} for split in ("train", "eval")}


def build_photos(out_dir, preset: str = "photos", seed: int = 0, workers: int | None = None) -> Path:
    """Build (or reuse) a photo preset; returns its folder (train/, eval/, landmarks_*.txt)."""
    if preset not in PHOTO_PRESETS:
        raise ValueError(f"unknown photo preset {preset!r}; choose one of {sorted(PHOTO_PRESETS)}")
    pre = PHOTO_PRESETS[preset]
    final, tmp = open_build(out_dir, preset, seed)
    if tmp is None:
        return final
    start = time.time()
    jobs = plan_photos(pre, seed)
    renderer = Renderer(seed, pre, workers)
    lines = {"train": [], "eval": []}
    levels = {}
    try:
        for job, res in zip(jobs, renderer.map(jobs), strict=True):
            rel = f"{job['folder']}/{job['name']}"
            atomic.write_bytes(tmp / job["split"] / rel, res["raw"], durable=False)
            lines[job["split"]].append(rel + " " + " ".join(f"{v:.3f}" for v in res["lm"].ravel()))
            levels[job["level"]] = levels.get(job["level"], 0) + 1
        for split, rows in lines.items():
            atomic.write_text(tmp / f"landmarks_{split}.txt", "\n".join(rows) + "\n")
        facts = dict(build_facts(preset, seed, asdict(pre)), images={s: len(rows) for s, rows in lines.items()},
                     levels=levels, build_seconds=round(time.time() - start, 1))
        return publish_build(tmp, final, facts)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        renderer.close()
