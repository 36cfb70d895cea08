"""Render jobs and the pool that runs them: what every synthetic set (benchmark presets, photo presets, the quality
probe) draws its images through.

A job is a dict naming the set, the image index and the identity plus its nuisance options (pose, age, occlusion,
loose crop and capture level, video media, SCface camera). Every image's random streams are keyed by
``(seed, set code, index)``, so a job renders the same bytes in any process and any order.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from common.parallel import OrderedPool, default_workers
from dataset.synthetic.quality import align_captured, capture, encode_jpeg, loose_placement
from dataset.synthetic.render import TAG_SAMPLE, identity_params, keyed_rng, mugshot, render_face, sample_variation

SET_CODES = {"train": 0, "lfw": 1, "cfp_fp": 2, "agedb_30": 3, "calfw": 4, "cplfw": 5, "tinyface": 6, "scface": 7,
             "ijbb": 8, "photos": 9}  # photos: the identity-folder presets of dataset.synthetic.photos
# Rendering forks full Python processes, each a copy of the caller (a training run builds its cache in-process,
# torch loaded): two by default; outputs are byte-identical with any count, so more is opt-in (--workers).
RENDER_WORKER_CAP = 2


def pool_base(set_name: str, family_size: int) -> int:
    """First global identity of a set's pool: pools never overlap and start on a family boundary."""
    return SET_CODES[set_name] * family_size * 10**6


def make_job(set_name: str, index: int, ident: int, **kw) -> dict:
    """One image of `set_name` (its `index`-th) of global identity `ident`; `kw` overrides the default options."""
    job = {"set": SET_CODES[set_name], "index": index, "ident": ident, "pose": "normal", "age": None,
           "occlusion": 0.15, "loose": False, "level": "hq", "media": None, "camera": 0, "mugshot": False}
    job.update(kw)
    return job


def _variation(job: dict, p: dict, seed: int) -> tuple[dict, int]:
    """Nuisance parameters of a job; frames of one video share the media's pose, light and scene."""
    key = (seed, TAG_SAMPLE, job["set"], job["index"])
    r = keyed_rng(*key)
    if job["media"] is not None:
        mr = keyed_rng(seed, TAG_SAMPLE, job["set"], 10**9 + job["media"])
        age = None if job["age"] is None else mr.uniform(*job["age"])
        v = sample_variation(mr, p, job["pose"], age, job["occlusion"])
        v = dict(v, yaw=v["yaw"] + math.radians(r.normal(0, 3)), jitter_rot=r.normal(0, 3),
                 jitter_shift=r.normal(0, 1.3, 2), blink=r.uniform() < 0.07)
        seed_bg = int(keyed_rng(*key[:3], 10**9 + job["media"]).integers(2**31))
    else:
        age = None if job["age"] is None else r.uniform(*job["age"])
        v = sample_variation(r, p, job["pose"], age, job["occlusion"])
        seed_bg = int(r.integers(2**31))
    if job["camera"]:  # SCface surveillance cameras: mounted above, each at its own angle and colour response
        cr = keyed_rng(seed, TAG_SAMPLE, job["set"], 2 * 10**9 + job["camera"])
        v = dict(v, yaw=v["yaw"] * 0.5 + math.radians(cr.uniform(-25, 25)), pitch=math.radians(cr.uniform(8, 18)),
                 cast=cr.uniform(0.85, 1.15, 3), gamma=v["gamma"] * cr.uniform(0.85, 1.15), occluder=0)
    if job["mugshot"]:
        v = mugshot(v)
    return v, seed_bg


def render_job(seed: int, family_size: int, sibling_scale: float, job: dict) -> dict:
    """One image: ``raw`` JPEG (+ its landmarks) and, for loose crops, the ``aligned`` 112x112 JPEG."""
    p = identity_params(seed, job["ident"], family_size, sibling_scale)
    v, seed_bg = _variation(job, p, seed)
    r = keyed_rng(seed, TAG_SAMPLE, job["set"], job["index"], 1)
    if not job["loose"]:
        img, lm = render_face(p, v, seed_bg)
        return {"raw": encode_jpeg(img, int(r.integers(85, 96))), "lm": lm, "aligned": None}
    canvas = job["canvas"]
    place, face_scale = loose_placement(r, canvas, job.get("face_scale", (0.8, 1.0)))
    img, lm = render_face(p, v, seed_bg, canvas=canvas, place=place)
    raw, lm_raw = capture(img, lm, job["level"], r, face_px_at_full=112 * face_scale, landmark_noise=0.8)
    # The protocol file is the truth: align from the landmarks exactly as written there (so re-preparing the raw
    # layout with dataset.prepare reproduces the packed set byte for byte).
    lm_raw = np.round(lm_raw, job.get("lm_decimals", 3))
    points = lm_raw if job.get("align_points", 5) == 5 else scface_points_from_landmarks5(lm_raw)
    return {"raw": raw, "lm": lm_raw, "aligned": encode_jpeg(align_captured(raw, points), 95)}


def scface_points_from_landmarks5(lm5: np.ndarray) -> np.ndarray:
    """SCface's 4 points (QGFace template): both eyes, nose tip, mouth centre (rounded like all.txt's columns)."""
    return np.round(np.concatenate([lm5[:3], (lm5[3:4] + lm5[4:5]) / 2]), 2)


class Renderer:
    """Ordered parallel map of render jobs over a process pool (or inline with ``workers <= 1``)."""

    def __init__(self, seed: int, preset, workers: int | None = None):
        """`preset`: any preset with `family_size` and `sibling_scale`; `workers` None = `default_workers`."""
        self.args = (seed, preset.family_size, preset.sibling_scale)
        workers = default_workers(RENDER_WORKER_CAP) if workers is None else workers
        threads = cv2.getNumThreads()
        if workers > 1:
            cv2.setNumThreads(1)  # no OpenCV thread pool inherited in a locked state by forked children
        self.pool = OrderedPool(workers, "processes", initializer=_worker_init, chunksize=16)
        cv2.setNumThreads(threads)

    def map(self, jobs: list[dict]):
        return self.pool.map(_render_star, [(*self.args, job) for job in jobs])

    def close(self):
        self.pool.close()


def _worker_init():
    cv2.setNumThreads(1)


def _render_star(call):
    return render_job(*call)
