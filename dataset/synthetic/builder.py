"""Procedural mixed-quality face benchmark written in every real format the project reads.

    python -m dataset.synthetic --out data/synthetic --preset demo --seed 0
    python -m dataset.synthetic --samples assets          # the sample images of docs/synthetic.md

``build(out_dir, preset, seed)`` returns ``<out_dir>/<cache_name>/`` (``dataset.synthetic.cache.cache_name``) holding::

    train/train.rec, train.idx, dataset.json      InsightFace training pack (header0 + identity records)
    val/{lfw,cfp_fp,agedb_30,calfw,cplfw}.bin     HQ verification pairs, 10 contiguous folds, half same / half diff
    val/{tinyface,scface,ijbb}/                   packed sets (dataset.evalsets) with their protocol files
    raw/tinyface/Testing_Set/{Probe,Gallery_Match,Gallery_Distractor}/*.jpg
    raw/scface/all.txt + raw/scface/images/<id>.jpg
    raw/IJBB/loose_crop/*.jpg + raw/IJBB/meta/*.txt|csv
    DONE                                          build facts (JSON), written last

A folder whose ``DONE`` names this generator version and library versions is reused; a build goes to a staging
sibling published at the end (``dataset.synthetic.cache``).
Rendering (OpenCV, see ``dataset.synthetic.render``) runs in worker processes (``dataset.synthetic.jobs``); every
image has its own seed derived from ``(seed, set, index)``, so the output is byte-identical for a given seed whatever
the number of workers. ``GENERATOR_VERSION`` is part of the folder name: bump it whenever the output of any preset
changes.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from common import atomic
from dataset.convert import write_insightface_rec
from dataset.evalsets import write_packed_set
from dataset.formats import write_bin
from dataset.synthetic.cache import GENERATOR_VERSION, build_facts, open_build, publish_build
from dataset.synthetic.jobs import SET_CODES, Renderer, make_job, pool_base, render_job, scface_points_from_landmarks5
from dataset.synthetic.photos import PHOTO_PRESETS, build_photos
from dataset.synthetic.render import keyed_rng

BIN_SETS = ("lfw", "cfp_fp", "agedb_30", "calfw", "cplfw")
SCFACE_CAMERAS = 5
SCFACE_LEVELS = {1: "low", 2: "mid", 3: "high"}  # d1 = 4.2 m = worst
TINYFACE_SPLIT_DIRS = {"probe": "Probe", "gallery_match": "Gallery_Match", "gallery_distractor": "Gallery_Distractor"}


@dataclass(frozen=True)
class Preset:
    train_ids: int
    train_images: int  # per identity
    bin_pairs: int  # per .bin; a multiple of 20 (10 folds, half same / half diff)
    tinyface_ids: int
    tinyface_probes: int  # per identity
    tinyface_matches: int  # per identity
    tinyface_distractors: int
    scface_subjects: int
    ijb_subjects: int
    ijb_templates: int  # per subject
    ijb_max_impostors: int
    family_size: int = 3
    sibling_scale: float = 2.5


PRESETS = {
    "smoke": Preset(train_ids=30, train_images=6, bin_pairs=40, tinyface_ids=6, tinyface_probes=2, tinyface_matches=1,
                    tinyface_distractors=8, scface_subjects=4, ijb_subjects=6, ijb_templates=2,
                    ijb_max_impostors=40),
    "demo": Preset(train_ids=501, train_images=16, bin_pairs=300, tinyface_ids=81, tinyface_probes=3,
                   tinyface_matches=2, tinyface_distractors=300, scface_subjects=42, ijb_subjects=162,
                   ijb_templates=3, ijb_max_impostors=10**6),
    "ablation": Preset(train_ids=999, train_images=20, bin_pairs=600, tinyface_ids=150, tinyface_probes=3,
                       tinyface_matches=2, tinyface_distractors=600, scface_subjects=81, ijb_subjects=240,
                       ijb_templates=3, ijb_max_impostors=200_000),
}

# HQ .bin flavours: (pose of image A, pose of image B, age range A, age range B, share of look-alike negatives).
BIN_FLAVOURS = {
    "lfw": ("normal", "normal", None, None, 0.1),
    "cfp_fp": ("frontal", "profile", None, None, 0.1),
    "cplfw": ("normal", "wide", None, None, 0.3),
    "agedb_30": ("normal", "normal", (0.0, 0.2), (0.7, 1.0), 0.1),
    "calfw": ("normal", "normal", (0.0, 0.3), (0.55, 0.9), 0.3),
}


# ----------------------------------------------------------------------------------------------- sets


def plan_train(pre: Preset, seed: int) -> list[dict]:
    base = pool_base("train", pre.family_size)
    r = keyed_rng(seed, 100)
    jobs = []
    for label in range(pre.train_ids):
        for _k in range(pre.train_images):
            u = r.uniform()
            pose = "profile" if u < 0.08 else "wide" if u < 0.2 else "normal"
            age = (0.0, 1.0) if r.uniform() < 0.2 else None
            jobs.append(make_job("train", len(jobs), base + label, pose=pose, age=age, label=label))
    return jobs


def _train(root: Path, renderer: Renderer, pre: Preset, seed: int) -> dict:
    jobs = plan_train(pre, seed)
    items = ((res["raw"], job["label"]) for job, res in zip(jobs, renderer.map(jobs), strict=True))
    info = write_insightface_rec(root / "train", items, name="train", num_workers=1)
    facts = {"num_classes": info["num_classes"], "num_images": info["num_images"], "image_size": [112, 112],
             "color": "BGR", "generator": f"synthetic v{GENERATOR_VERSION}", "seed": seed}
    atomic.write_json(root / "train" / "dataset.json", facts, indent=1)
    return facts


def bin_pairs(name: str, pre: Preset, seed: int) -> list[tuple[int, int, bool]]:
    """``(identity_a, identity_b, issame)`` per pair: 10 contiguous folds, each half same then half different."""
    fs = pre.family_size
    base = pool_base(name, fs)
    n_ids = max(2 * fs, (pre.bin_pairs // 3) // fs * fs)
    p_sibling = BIN_FLAVOURS[name][4]
    r = keyed_rng(seed, 101, SET_CODES[name])
    per_fold = pre.bin_pairs // 10
    pairs = []
    for _fold in range(10):
        for k in range(per_fold):
            if k < per_fold // 2:
                a = int(r.integers(n_ids))
                pairs.append((base + a, base + a, True))
            else:
                a = int(r.integers(n_ids))
                if r.uniform() < p_sibling:
                    fam = a // fs * fs
                    b = fam + (a - fam + int(r.integers(1, fs))) % fs
                else:
                    b = (a // fs * fs + fs * int(r.integers(1, n_ids // fs)) + int(r.integers(fs))) % n_ids
                pairs.append((base + a, base + b, False))
    return pairs


def plan_bin(name: str, pre: Preset, seed: int) -> tuple[list, list[dict]]:
    """Pairs and the render jobs of one .bin (images 2k, 2k+1 = pair k), with the set's pose/age flavour."""
    pose_a, pose_b, age_a, age_b, _ = BIN_FLAVOURS[name]
    pairs = bin_pairs(name, pre, seed)
    swap = keyed_rng(seed, 102, SET_CODES[name]).uniform(size=len(pairs)) < 0.5
    jobs = []
    for (a, b, _same), s in zip(pairs, swap, strict=True):
        first, second = ((pose_a, age_a), (pose_b, age_b)) if not s else ((pose_b, age_b), (pose_a, age_a))
        jobs.append(make_job(name, len(jobs), a, pose=first[0], age=first[1]))
        jobs.append(make_job(name, len(jobs), b, pose=second[0], age=second[1]))
    return pairs, jobs


def _bins(val: Path, renderer: Renderer, pre: Preset, seed: int) -> dict:
    counts = {}
    for name in BIN_SETS:
        if pre.bin_pairs % 20:
            raise ValueError(f"bin_pairs={pre.bin_pairs} must be a multiple of 20 (10 folds, balanced)")
        pairs, jobs = plan_bin(name, pre, seed)
        blobs = [res["raw"] for res in renderer.map(jobs)]
        write_bin(val / f"{name}.bin", blobs, [same for _, _, same in pairs])
        counts[name] = len(pairs)
    return counts


def plan_tinyface(pre: Preset, seed: int) -> tuple[list[dict], list[dict]]:
    """LQ probes (8-24 px faces) vs. an HQ-ish gallery of matches plus distractor identities."""
    base = pool_base("tinyface", pre.family_size)
    r = keyed_rng(seed, 103)
    jobs, rows = [], []
    loose = {"loose": True, "canvas": 128, "face_scale": (0.8, 0.95)}
    for i in range(pre.tinyface_ids):
        for k in range(pre.tinyface_probes):
            jobs.append(make_job("tinyface", len(jobs), base + i, level="tiny", **loose))
            rows.append({"name": f"Probe/{i + 1}_{k + 1}.jpg", "label": i + 1, "split": "probe"})
        for k in range(pre.tinyface_matches):
            level = "hq" if r.uniform() < 0.7 else "high"
            jobs.append(make_job("tinyface", len(jobs), base + i, level=level, **loose))
            rows.append({"name": f"Gallery_Match/{i + 1}_{pre.tinyface_probes + k + 1}.jpg", "label": i + 1,
                         "split": "gallery_match"})
    first_distractor = -(-pre.tinyface_ids // pre.family_size) * pre.family_size  # next family boundary
    for k in range(pre.tinyface_distractors):
        level = "hq" if r.uniform() < 0.7 else "high"
        ident = base + first_distractor + k // 2  # two images per distractor identity
        jobs.append(make_job("tinyface", len(jobs), ident, level=level, **loose))
        rows.append({"name": f"Gallery_Distractor/distractor_{k + 1:06d}.jpg", "label": -1,
                     "split": "gallery_distractor"})
    return jobs, rows


def _tinyface(root: Path, renderer: Renderer, pre: Preset, seed: int) -> dict:
    jobs, rows = plan_tinyface(pre, seed)
    raw_dir = root / "raw" / "tinyface" / "Testing_Set"
    for sub in TINYFACE_SPLIT_DIRS.values():
        (raw_dir / sub).mkdir(parents=True, exist_ok=True)
    aligned = []
    for row, res in zip(rows, renderer.map(jobs), strict=True):
        atomic.write_bytes(raw_dir / row["name"], res["raw"], durable=False)
        aligned.append((res["aligned"], row))
    write_packed_set(root / "val" / "tinyface", aligned, ["index", "name", "label", "split"])
    return {s: sum(r_["split"] == s for r_ in rows) for s in TINYFACE_SPLIT_DIRS}


def plan_scface(pre: Preset, seed: int) -> tuple[list[dict], list[dict]]:
    """One frontal mugshot per subject; 5 cameras x 3 distances of probes (d1 = 10-16 px ... d3 = 24-32 px)."""
    scface = {"loose": True, "canvas": 144, "occlusion": 0.0, "lm_decimals": 2, "align_points": 4}
    base = pool_base("scface", pre.family_size)
    jobs, rows = [], []
    for s in range(1, pre.scface_subjects + 1):
        ident = base + s - 1
        jobs.append(make_job("scface", len(jobs), ident, mugshot=True, level="hq", face_scale=(0.85, 0.95), **scface))
        rows.append({"name": f"{s:03d}_frontal", "label": s, "split": "gallery", "camera": "frontal",
                     "distance": 0})
        for cam in range(1, SCFACE_CAMERAS + 1):
            for d in (1, 2, 3):
                jobs.append(make_job("scface", len(jobs), ident, camera=cam, level=SCFACE_LEVELS[d],
                                     face_scale=(0.7, 0.9), **scface))
                rows.append({"name": f"{s:03d}_cam{cam}_{d}", "label": s, "split": "probe", "camera": f"cam{cam}",
                             "distance": d})
    return jobs, rows


def _scface(root: Path, renderer: Renderer, pre: Preset, seed: int) -> dict:
    jobs, rows = plan_scface(pre, seed)
    raw_dir = root / "raw" / "scface"
    (raw_dir / "images").mkdir(parents=True, exist_ok=True)
    lines, aligned = [], []
    for row, res in zip(rows, renderer.map(jobs), strict=True):
        atomic.write_bytes(raw_dir / "images" / f"{row['name']}.jpg", res["raw"], durable=False)
        # all.txt layout: lex,ley,rex,rey,nx,ny,mx,my (mouth centre), the default of dataset.prepare scface
        points = scface_points_from_landmarks5(res["lm"]).reshape(-1)
        lines.append("\t".join([row["name"]] + [f"{c:.2f}" for c in points]))
        aligned.append((res["aligned"], row))
    atomic.write_text(raw_dir / "all.txt", "\n".join(lines) + "\n")
    write_packed_set(root / "val" / "scface", aligned, ["index", "name", "label", "split", "camera", "distance"],
                     extra_files={"meta/all.txt": raw_dir / "all.txt"})
    return {"gallery": pre.scface_subjects, "probes_per_distance": pre.scface_subjects * SCFACE_CAMERAS}


def ijb_plan(pre: Preset, seed: int):
    """Templates as lists of media (still or video frames), each media with one quality level."""
    base = pool_base("ijbb", pre.family_size)
    r = keyed_rng(seed, 104)
    templates = []  # (template_id, subject, [(media_id, level, n_frames, pose)])
    media_id = 0
    for s in range(pre.ijb_subjects):
        for _t in range(pre.ijb_templates):
            media = []
            for _m in range(int(r.integers(1, 3))):
                media_id += 1
                video = r.uniform() < 0.35
                level = str(r.choice(["hq", "high", "mid", "low"], p=[0.35, 0.25, 0.2, 0.2]))
                pose = str(r.choice(["normal", "wide", "profile"], p=[0.7, 0.22, 0.08]))
                media.append((media_id, level, int(r.integers(2, 4)) if video else 1, pose))
            templates.append((len(templates) + 1, s + 1, base + s, media))
    return templates


def ijb_pairs(templates, pre: Preset, seed: int) -> list[tuple[int, int, int]]:
    """All genuine template pairs and all (or a deterministic subsample of) impostor pairs, tid1 < tid2."""
    tids = np.array([t[0] for t in templates])
    subj = np.array([t[1] for t in templates])
    i, j = np.triu_indices(len(templates), k=1)
    same = subj[i] == subj[j]
    keep = same.copy()
    impostor = np.flatnonzero(~same)
    if len(impostor) > pre.ijb_max_impostors:
        impostor = np.sort(keyed_rng(seed, 105).choice(impostor, pre.ijb_max_impostors, replace=False))
    keep[impostor] = True
    return list(zip(tids[i[keep]].tolist(), tids[j[keep]].tolist(), same[keep].astype(int).tolist(), strict=True))


def plan_ijbb(pre: Preset, seed: int):
    templates = ijb_plan(pre, seed)
    jobs, rows = [], []
    for tid, subject, ident, media in templates:
        for mid, level, frames, pose in media:
            for _f in range(frames):
                jobs.append(make_job("ijbb", len(jobs), ident, loose=True, canvas=160, level=level, pose=pose,
                                     media=mid, face_scale=(0.7, 0.95)))
                name = f"{len(jobs)}.jpg"
                rows.append({"name": name, "label": subject, "template": tid, "media": mid})
    return templates, jobs, rows


def _ijbb(root: Path, renderer: Renderer, pre: Preset, seed: int) -> dict:
    templates, jobs, rows = plan_ijbb(pre, seed)
    raw_dir = root / "raw" / "IJBB"
    (raw_dir / "loose_crop").mkdir(parents=True, exist_ok=True)
    (raw_dir / "meta").mkdir(parents=True, exist_ok=True)
    pts_lines, aligned = [], []
    faceness_rng = keyed_rng(seed, 106)
    quality_faceness = {"hq": (0.97, 1.0), "high": (0.9, 0.99), "mid": (0.75, 0.95), "low": (0.5, 0.9)}
    for job, row, res in zip(jobs, rows, renderer.map(jobs), strict=True):
        atomic.write_bytes(raw_dir / "loose_crop" / row["name"], res["raw"], durable=False)
        row["faceness"] = round(float(faceness_rng.uniform(*quality_faceness[job["level"]])), 4)
        pts_lines.append(" ".join([row["name"]] + [f"{c:.3f}" for c in res["lm"].reshape(-1)] +
                                  [f"{row['faceness']:.4f}"]))
        aligned.append((res["aligned"], row))
    meta = raw_dir / "meta"
    atomic.write_text(meta / "ijbb_name_5pts_score.txt", "\n".join(pts_lines) + "\n")
    atomic.write_text(meta / "ijbb_face_tid_mid.txt",
                      "".join(f"{r_['name']} {r_['template']} {r_['media']}\n" for r_ in rows))
    pairs = ijb_pairs(templates, pre, seed)
    atomic.write_text(meta / "ijbb_template_pair_label.txt", "".join(f"{a} {b} {lab}\n" for a, b, lab in pairs))
    # 1:N lists (template -> subject): first template of each subject in gallery S1 (odd) / S2 (even), rest probes.
    first = {}
    for tid, subject, _ident, _media in templates:
        first.setdefault(subject, tid)
    for fname, select in (("ijbb_1N_gallery_S1.csv", lambda t, s: first[s] == t and s % 2 == 1),
                          ("ijbb_1N_gallery_S2.csv", lambda t, s: first[s] == t and s % 2 == 0),
                          ("ijbb_1N_probe_mixed.csv", lambda t, s: first[s] != t)):
        body = "".join(f"{t},{s}\n" for t, s, _i, _m in templates if select(t, s))
        atomic.write_text(meta / fname, "TEMPLATE_ID,SUBJECT_ID\n" + body)
    extra = {f"meta/{p.name}": p for p in sorted(meta.iterdir())}
    write_packed_set(root / "val" / "ijbb", aligned, ["index", "name", "label", "template", "media", "faceness"],
                     extra_files=extra)
    genuine = sum(lab for _, _, lab in pairs)
    return {"images": len(rows), "templates": len(templates), "genuine": genuine, "impostor": len(pairs) - genuine}


def identities_used(preset: str, seed: int = 0) -> dict[str, set[int]]:
    """Global identity ids each set draws (from the plans alone, nothing rendered): for disjointness checks."""
    pre = PRESETS[preset]
    used = {"train": {j["ident"] for j in plan_train(pre, seed)}}
    for name in BIN_SETS:
        used[name] = {j["ident"] for j in plan_bin(name, pre, seed)[1]}
    used["tinyface"] = {j["ident"] for j in plan_tinyface(pre, seed)[0]}
    used["scface"] = {j["ident"] for j in plan_scface(pre, seed)[0]}
    used["ijbb"] = {j["ident"] for j in plan_ijbb(pre, seed)[1]}
    return used


# ----------------------------------------------------------------------------------------------- build


def build(out_dir, preset: str = "demo", seed: int = 0, workers: int | None = None, verbose: bool = False) -> Path:
    """Build (or reuse) the benchmark; returns ``<out_dir>/<cache_name>``. The photo presets
    (identity folders + landmark file, ``dataset.synthetic.photos``) are built by their own module."""
    if preset in PHOTO_PRESETS:
        return build_photos(out_dir, preset, seed, workers)
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic preset {preset!r}; choose one of {sorted(PRESETS)}")
    pre = PRESETS[preset]
    final, tmp = open_build(out_dir, preset, seed)
    if tmp is None:
        return final
    renderer = Renderer(seed, pre, workers)
    start = time.time()
    facts = build_facts(preset, seed, asdict(pre))
    try:
        (tmp / "val").mkdir()
        stages = (("train", lambda: _train(tmp, renderer, pre, seed)),
                  ("bins", lambda: _bins(tmp / "val", renderer, pre, seed)),
                  ("tinyface", lambda: _tinyface(tmp, renderer, pre, seed)),
                  ("scface", lambda: _scface(tmp, renderer, pre, seed)),
                  ("ijbb", lambda: _ijbb(tmp, renderer, pre, seed)))
        for name, stage in stages:
            t0 = time.time()
            facts[name] = stage()
            if verbose:
                print(f"[synthetic] {name}: {facts[name]} ({time.time() - t0:.1f} s)", file=sys.stderr)
        facts["build_seconds"] = round(time.time() - start, 1)
        return publish_build(tmp, final, facts)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        renderer.close()


# ----------------------------------------------------------------------------------------------- sample images


def save_samples(out_dir, seed: int = 0) -> list[Path]:
    """The sample images of docs/synthetic.md: look-alike families (rows) and one face at every capture quality."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pre = PRESETS["demo"]
    base = pool_base("lfw", pre.family_size)
    rows = []
    for fam in range(2):
        tiles = []
        for member in range(3):
            for k in range(2):
                job = make_job("lfw", 10**6 + fam * 10 + member * 2 + k, base + fam * pre.family_size + member)
                tiles.append(cv2.imdecode(np.frombuffer(render_job(seed, pre.family_size, pre.sibling_scale, job)
                                                        ["raw"], np.uint8), cv2.IMREAD_COLOR))
        rows.append(np.concatenate(tiles, axis=1))
    families = out_dir / "synthetic_families.png"
    cv2.imwrite(str(families), np.concatenate(rows, axis=0), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    top, bottom = [], []
    for level in ("hq", "high", "mid", "low", "tiny"):
        job = make_job("tinyface", 10**6, base, loose=True, canvas=128, level=level, face_scale=(0.9, 0.9))
        res = render_job(seed, pre.family_size, pre.sibling_scale, job)
        raw = cv2.imdecode(np.frombuffer(res["raw"], np.uint8), cv2.IMREAD_COLOR)
        top.append(cv2.resize(raw, (112, 112), interpolation=cv2.INTER_NEAREST))  # the capture, pixels visible
        bottom.append(cv2.imdecode(np.frombuffer(res["aligned"], np.uint8), cv2.IMREAD_COLOR))
    levels = out_dir / "synthetic_levels.png"
    cv2.imwrite(str(levels), np.concatenate([np.concatenate(top, 1), np.concatenate(bottom, 1)], 0),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return [families, levels]
