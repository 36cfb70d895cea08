"""Procedural faces drawn with OpenCV primitives, already aligned to the ArcFace 112x112 template.

An identity is a set of coarse parameters (shared by a *family* of look-alike siblings, up to a small perturbation)
plus fine detail that only survives at high resolution (moles, freckles, a scar, iris pattern, skin texture). A sample
adds pose, expression, age drift, lighting, background, accessories and occlusion. Faces are modelled on a head
ellipsoid so yaw and pitch move the features relative to the outline; the 5 projected landmarks are then aligned to
the template by a least-squares similarity (as a real aligner would) plus detector-like jitter, and everything is drawn
directly in output pixels through that transform, so the generator knows exactly where its landmarks are.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

from alignment.align import ARCFACE_TEMPLATE, estimate_similarity

SHIFT = 4  # fixed-point bits for sub-pixel drawing
ONE = 1 << SHIFT
AA = cv2.LINE_AA

# Seed-stream tags: every random draw is keyed by (seed, tag, ...) so it never depends on worker count or order.
TAG_FAMILY, TAG_MEMBER, TAG_SAMPLE = 1, 2, 3

SKIN_DARK = np.array([45, 70, 110.0])
SKIN_LIGHT = np.array([185, 200, 235.0])
HAIR_PALETTE = np.array([[22, 22, 28], [30, 48, 85], [60, 95, 150], [95, 165, 205], [45, 75, 160], [140, 140, 145.0]])
EYE_PALETTE = np.array([[40, 55, 90], [25, 35, 50], [140, 110, 60], [90, 140, 90], [120, 120, 110.0]])


def keyed_rng(*key) -> np.random.Generator:
    """The random stream of one key, e.g. ``(seed, TAG_SAMPLE, set_code, index)``: the same key, the same draws."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


# ----------------------------------------------------------------------------------------------- identities


def _family_params(seed: int, family: int) -> dict:
    r = keyed_rng(seed, TAG_FAMILY, family)
    tone = r.uniform()
    hair_idx = int(r.choice(len(HAIR_PALETTE), p=[0.35, 0.25, 0.15, 0.1, 0.08, 0.07]))
    return {
        "a": r.uniform(35, 45), "b": r.uniform(47, 57), "chin": r.uniform(0.0, 0.55), "cy": r.uniform(-3, 3),
        "skin": SKIN_DARK + tone * (SKIN_LIGHT - SKIN_DARK) + r.normal(0, 8, 3),
        "hair": HAIR_PALETTE[hair_idx] + r.normal(0, 10, 3), "hair_style": int(r.integers(0, 5)),
        "hairline": r.uniform(-50, -37), "hair_volume": r.uniform(2, 12), "part": r.uniform(-0.8, 0.8),
        "eye": EYE_PALETTE[int(r.integers(len(EYE_PALETTE)))] + r.normal(0, 12, 3),
        "ex": r.uniform(15.5, 19.5), "ey": r.uniform(-22.5, -18.5),
        "ew": r.uniform(6.5, 9.5), "eh": r.uniform(2.6, 4.4),
        "iris": r.uniform(0.45, 0.65),
        "brow_t": r.uniform(1.2, 3.6), "brow_angle": r.uniform(-0.22, 0.22), "brow_gap": r.uniform(5, 9),
        "brow_arch": r.uniform(0, 3),
        "ny": r.uniform(-3, 2), "nw": r.uniform(5, 9), "nz": r.uniform(7, 13),
        "mx": r.uniform(12, 17.5), "my": r.uniform(17.5, 22.5),
        "lip_t": r.uniform(1.8, 4.5), "lip_red": r.uniform(0, 1),
        "ear": r.uniform(8, 13),
        "beard": int(r.choice(4, p=[0.7, 0.1, 0.1, 0.1])), "beard_density": r.uniform(0.35, 0.9),
        "glasses_habit": bool(r.uniform() < 0.12), "age": r.uniform(0.05, 0.55), "grey": r.uniform(0.3, 1.0),
        "cloth": r.uniform(20, 235, 3),
    }


# Continuous parameters siblings perturb (fraction of the family spread); the rest is shared exactly.
_SIBLING_SD = {"a": 1.2, "b": 1.2, "chin": 0.06, "ex": 0.5, "ey": 0.5, "ew": 0.35, "eh": 0.25, "brow_t": 0.3,
               "brow_angle": 0.04, "brow_gap": 0.5, "ny": 0.6, "nw": 0.5, "nz": 0.8, "mx": 0.6, "my": 0.6,
               "lip_t": 0.35, "hairline": 1.5, "hair_volume": 1.2, "age": 0.05}


@functools.lru_cache(maxsize=4096)
def identity_params(seed: int, identity: int, family_size: int, sibling_scale: float) -> dict:
    """Coarse parameters of the family, a small sibling perturbation, and the member's own fine detail."""
    p = dict(_family_params(seed, identity // family_size))
    r = keyed_rng(seed, TAG_MEMBER, identity)
    for key, sd in _SIBLING_SD.items():
        p[key] = p[key] + r.normal(0, sd * sibling_scale)
    for key in ("skin", "hair", "eye"):
        p[key] = np.clip(p[key] + r.normal(0, 5 * sibling_scale, 3), 0, 255)
    # Fine detail: positions in face coordinates (origin = face centre), tiny at 112 px, gone at 16 px.
    n_moles = int(r.integers(2, 7))
    p["moles"] = np.stack([r.uniform(-0.75, 0.75, n_moles), r.uniform(-0.7, 0.75, n_moles),
                           r.uniform(0.6, 1.4, n_moles), r.uniform(0.45, 0.75, n_moles)], axis=1)
    n_freckles = int(r.integers(12, 30)) if r.uniform() < 0.35 else 0
    side = r.choice([-1.0, 1.0], n_freckles)
    p["freckles"] = np.stack([side * r.uniform(0.2, 0.6, n_freckles), r.uniform(-0.1, 0.3, n_freckles)], axis=1)
    p["scar"] = r.uniform(-0.6, 0.6, 4) if r.uniform() < 0.35 else None
    p["iris_ring"] = r.uniform(0, 255, 3)
    p["eye_asym"] = r.normal(0, 0.6)
    p["mouth_asym"] = r.normal(0, 0.6)
    p["brow_notch"] = r.uniform(0.2, 0.8) if r.uniform() < 0.3 else None
    p["texture_seed"] = int(r.integers(2**31))
    p["tex_amp"] = r.uniform(0.04, 0.10)
    return p


@functools.lru_cache(maxsize=512)
def _skin_texture(texture_seed: int) -> np.ndarray:
    """Identity skin texture in face coordinates (128x128 float, +-1): fine grain plus small blotches."""
    r = keyed_rng(texture_seed)
    fine = r.normal(0, 1, (128, 128)).astype(np.float32)
    blot = cv2.resize(r.normal(0, 1, (24, 24)).astype(np.float32), (128, 128), interpolation=cv2.INTER_CUBIC)
    tex = 0.6 * cv2.GaussianBlur(fine, (0, 0), 0.6) + 0.5 * blot
    return np.clip(tex / (np.abs(tex).max() + 1e-6), -1, 1)


# ----------------------------------------------------------------------------------------------- samples


def mugshot(v: dict) -> dict:
    """Turn a sample into a controlled frontal mugshot: neutral, evenly lit, plain wall, nothing in the way."""
    return dict(v, yaw=math.radians(v["jitter_rot"] * 0.5), pitch=0.0, smile=0.0, open=0.0, blink=False, squint=0.0,
                light_amp=0.05, bright=1.0, gamma=1.0, cast=np.ones(3), occluder=0, plain_bg=True, noise=0.5)


def sample_variation(r: np.random.Generator, p: dict, pose: str = "normal", age: float | None = None,
                     occlusion: float = 0.15) -> dict:
    """Per-image nuisance parameters; ``pose`` in {normal, frontal, profile, wide}, ``age`` overrides age drift."""
    if pose == "frontal":
        yaw = r.normal(0, 4)
    elif pose == "profile":
        yaw = r.choice([-1, 1]) * r.uniform(45, 62)
    elif pose == "wide":
        yaw = r.choice([-1, 1]) * r.uniform(20, 50)
    else:
        yaw = float(np.clip(r.normal(0, 13), -40, 40))
    smile = r.uniform(0, 1) if r.uniform() < 0.6 else 0.0
    return {
        "yaw": math.radians(yaw), "pitch": math.radians(float(np.clip(r.normal(0, 6), -15, 15))),
        "smile": smile, "open": r.uniform(0.2, 1.0) if r.uniform() < 0.2 else 0.0,
        "brow_raise": r.normal(0, 1.2), "blink": r.uniform() < 0.07, "squint": r.uniform(0, 0.35) * smile,
        "age": float(np.clip(p["age"] + r.normal(0, 0.1), 0, 1)) if age is None else float(age),
        "jitter_rot": r.normal(0, 3), "jitter_scale": r.normal(1, 0.03), "jitter_shift": r.normal(0, 1.3, 2),
        "light_dir": r.uniform(0, 2 * math.pi), "light_amp": r.uniform(0, 0.45), "bright": r.uniform(0.75, 1.2),
        "gamma": r.uniform(0.75, 1.35), "cast": r.uniform(0.92, 1.08, 3),
        "glasses": r.uniform() < (0.7 if p["glasses_habit"] else 0.04),
        "occluder": int(r.integers(1, 6)) if r.uniform() < occlusion else 0,
        "hair_jitter": r.normal(0, 1.0), "noise": r.uniform(0, 2.0),
    }


class _Pen:
    """Face-coordinate drawing through the head model (yaw/pitch) and a 2x3 pixel transform."""

    def __init__(self, img, p, v, matrix):
        self.img, self.p, self.v, self.m = img, p, v, matrix
        self.cy, self.sy = math.cos(v["yaw"]), math.sin(v["yaw"])
        self.cp, self.sp = math.cos(v["pitch"]), math.sin(v["pitch"])
        self.a, self.b, self.c = p["a"], p["b"], 0.9 * p["a"]
        self.scale = math.hypot(matrix[0, 0], matrix[0, 1])

    def depth(self, pts):
        q = 1 - (pts[:, 0] / self.a) ** 2 - (pts[:, 1] / self.b) ** 2
        return self.c * np.sqrt(np.clip(q, 0, 1))

    def project(self, pts, dz=0.0):
        """Surface points (x, y) [+ extra depth] -> rotated head -> 2D face plane (before the pixel transform)."""
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        z = self.depth(pts) + dz
        x = pts[:, 0] * self.cy + z * self.sy
        z2 = -pts[:, 0] * self.sy + z * self.cy
        y = pts[:, 1] * self.cp + z2 * self.sp
        return np.stack([x, y], axis=1)

    def visible(self, pt) -> float:
        """Cosine between the surface normal at ``pt`` and the view direction after yaw (<0: hidden)."""
        x, y = pt
        z = float(self.depth(np.array([[x, y]]))[0])
        n = np.array([x / self.a**2, z / self.c**2])
        n /= np.linalg.norm(n) + 1e-9
        return float(-n[0] * self.sy + n[1] * self.cy)

    def px(self, plane_pts):
        return plane_pts @ self.m[:, :2].T + self.m[:, 2]

    def fix(self, pts):
        return np.round(self.px(pts) * ONE).astype(np.int32)

    def fill(self, plane_pts, color):
        cv2.fillPoly(self.img, [self.fix(plane_pts)], _c(color), AA, SHIFT)

    def line(self, plane_pts, color, width):
        t = max(1, int(round(width * self.scale)))
        cv2.polylines(self.img, [self.fix(plane_pts)], False, _c(color), t, AA, SHIFT)

    def dot(self, plane_pt, radius, color):
        c = self.fix(np.asarray(plane_pt).reshape(1, 2))[0]
        cv2.circle(self.img, (int(c[0]), int(c[1])), max(1, int(round(radius * self.scale * ONE))), _c(color), -1,
                   AA, SHIFT)


def _c(color):
    return tuple(min(255.0, max(0.0, float(x))) for x in color)


def _ellipse(cx, cy, rx, ry, n=28, t0=0.0, t1=2 * math.pi):
    t = np.linspace(t0, t1, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def face_landmarks_3d(p: dict, v: dict) -> tuple[np.ndarray, np.ndarray]:
    """Surface points of the 5 landmarks (eye centres, nose tip, mouth corners) and the nose-tip extra depth."""
    smile = v["smile"]
    ey_l = p["ey"] + p["eye_asym"] * 0.5
    ey_r = p["ey"] - p["eye_asym"] * 0.5
    mw = p["mx"] * (1 + 0.12 * smile)
    my = p["my"] - 1.2 * smile
    pts = np.array([[-p["ex"], ey_l], [p["ex"], ey_r], [0, p["ny"]], [-mw, my + p["mouth_asym"] * 0.5],
                    [mw, my - p["mouth_asym"] * 0.5]])
    dz = np.array([-1.5, -1.5, p["nz"], -1.0, -1.0])
    return pts, dz


def render_face(p: dict, v: dict, seed_bg: int, canvas: int = 112,
                place: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face; returns (BGR uint8 canvas x canvas, landmarks [5, 2] in canvas pixels).

    With ``canvas=112`` and no ``place`` the face is aligned to the ArcFace template; a larger canvas with a
    ``place`` similarity (2x3, aligned pixels -> canvas pixels) gives a loose crop.
    """
    lm_surf, lm_dz = face_landmarks_3d(p, v)
    probe = _Pen(None, p, v, np.eye(2, 3))
    lm_plane = np.concatenate([probe.project(lm_surf[i:i + 1], lm_dz[i]) for i in range(5)])
    align = estimate_similarity(lm_plane, ARCFACE_TEMPLATE)
    # Detector-like jitter around the template centre, then the loose-crop placement.
    ang, s = math.radians(v["jitter_rot"]), v["jitter_scale"]
    jit = np.array([[s * math.cos(ang), -s * math.sin(ang)], [s * math.sin(ang), s * math.cos(ang)]])
    centre = np.array([56.0, 64.0])
    lin = jit @ align[:, :2]
    trans = jit @ (align[:, 2] - centre) + centre + v["jitter_shift"]
    matrix = np.concatenate([lin, trans[:, None]], axis=1)
    if place is not None:
        matrix = np.concatenate([place[:, :2] @ lin, (place[:, :2] @ trans + place[:, 2])[:, None]], axis=1)

    img = _background(seed_bg, canvas, p, v)
    pen = _Pen(img, p, v, matrix)
    _draw_head(pen)
    _draw_texture(pen, canvas)
    _draw_fine_detail(pen)
    _draw_eyes(pen)
    _draw_nose(pen)
    _draw_mouth(pen)
    _draw_beard(pen)
    _draw_front_hair(pen)
    _draw_age(pen)
    if v["glasses"]:
        _draw_glasses(pen)
    if v["occluder"]:
        _draw_occluder(pen, seed_bg)
    img = _lighting(img, v, seed_bg)
    return img, pen.px(lm_plane)


def _background(seed_bg, canvas, p, v):
    r = keyed_rng(seed_bg, 7)
    if v.get("plain_bg"):  # mugshot wall
        return np.full((canvas, canvas, 3), r.uniform(150, 200), np.uint8)
    small = max(6, canvas // 8)
    base = r.uniform(30, 220, 3)
    bg = np.empty((small, small, 3), np.float32)
    bg[:] = base
    for _ in range(int(r.integers(3, 9))):
        x0, y0 = r.uniform(0, small, 2)
        w, h = r.uniform(1, small / 2, 2)
        bg[int(y0):int(y0 + h), int(x0):int(x0 + w)] = r.uniform(0, 255, 3)
    bg = cv2.resize(bg, (canvas, canvas), interpolation=cv2.INTER_LINEAR)
    bg = cv2.GaussianBlur(bg, (0, 0), r.uniform(1.0, 3.0))
    return np.clip(bg, 0, 255).astype(np.uint8)


def _draw_head(pen: _Pen):
    p, v = pen.p, pen.v
    a, b = pen.a, pen.b
    hair = _hair_colour(p, v)
    # Neck and shoulders behind the face.
    pen.fill(np.array([[-0.45 * a, 0.5 * b], [0.45 * a, 0.5 * b], [0.5 * a, 1.6 * b], [-0.5 * a, 1.6 * b]]),
             p["skin"] * 0.8)
    pen.fill(np.array([[-2.2 * a, 1.25 * b], [2.2 * a, 1.25 * b], [2.6 * a, 3 * b], [-2.6 * a, 3 * b]]), p["cloth"])
    half_w = math.sqrt((a * pen.cy) ** 2 + (pen.c * pen.sy) ** 2)
    top = -b * pen.cp
    if p["hair_style"] == 4:  # long hair behind the head
        vol = p["hair_volume"] + v["hair_jitter"]
        pen.fill(np.array([[-half_w - vol, top * 0.3], [-half_w - vol * 1.2, 1.05 * b], [half_w + vol * 1.2, 1.05 * b],
                           [half_w + vol, top * 0.3]]), hair)
    # Ears on the visible sides.
    for side in (-1, 1):
        base = np.array([side * a * 0.98, (p["ey"] + p["ny"]) / 2])
        if pen.visible(base) > -0.25:
            centre = pen.project(base)[0] + np.array([side * 2.0 * abs(pen.cy), 0])
            pen.fill(_ellipse(centre[0], centre[1], p["ear"] * 0.45 * (0.4 + 0.6 * abs(pen.cy)), p["ear"]),
                     p["skin"] * 0.85)
    # Face outline: ellipsoid silhouette with an identity-shaped chin; a darker rim gives roundness.
    t = np.linspace(0, 2 * math.pi, 48)
    y = np.sin(t) * b
    x = np.cos(t) * half_w * (1 - p["chin"] * np.clip(y / b, 0, 1) ** 2)
    outline = np.stack([x, y * pen.cp + p["cy"] * 0.2], axis=1)
    shift_x = 0.0
    pen.fill(outline + [shift_x, 0], p["skin"] * 0.88)
    inner = outline * [0.86, 0.92] + [pen.sy * 0.25 * a, -1]
    pen.fill(inner, p["skin"])
    pen.outline = outline


def _hair_colour(p, v):
    grey = np.clip((v["age"] - 0.35) / 0.65, 0, 1) * p["grey"]
    return p["hair"] * (1 - grey) + np.array([175, 175, 178.0]) * grey


def _draw_texture(pen: _Pen, canvas: int):
    """Warp the identity's skin texture with the face and modulate the face region by it."""
    p = pen.p
    tex = _skin_texture(p["texture_seed"])
    # Linearised head model (face centre) composed with the pixel transform; texture pixel (u, v) = face (u-64, v-64).
    lin = np.array([[pen.cy, 0.0], [-pen.sy * pen.sp, pen.cp]])
    off = np.array([pen.c * pen.sy, pen.c * pen.cy * pen.sp])
    to_plane = np.concatenate([lin, (off - lin @ np.array([64.0, 64.0]))[:, None]], axis=1)
    m = pen.m[:, :2] @ to_plane
    full = np.concatenate([m[:, :2], (pen.m[:, :2] @ to_plane[:, 2] + pen.m[:, 2])[:, None]], axis=1)
    warped = cv2.warpAffine(tex, full, (canvas, canvas), flags=cv2.INTER_LINEAR, borderValue=0)
    mask = np.zeros((canvas, canvas), np.uint8)
    cv2.fillPoly(mask, [pen.fix(pen.outline)], 255, AA, SHIFT)
    gain = 1 + p["tex_amp"] * warped * (mask.astype(np.float32) / 255)
    pen.img[:] = np.clip(pen.img * gain[:, :, None], 0, 255).astype(np.uint8)


def _draw_fine_detail(pen: _Pen):
    p = pen.p
    a, b = pen.a, pen.b
    for mx, my, rad, dark in p["moles"]:
        pt = np.array([mx * a * 0.8, my * b * 0.75])
        if pen.visible(pt) > 0.15:
            pen.dot(pen.project(pt)[0], rad, p["skin"] * dark)
    for fx, fy in p["freckles"]:
        pt = np.array([fx * a, fy * b * 0.6])
        if pen.visible(pt) > 0.15:
            pen.dot(pen.project(pt)[0], 0.55, p["skin"] * 0.72)
    if p["scar"] is not None:
        x0, y0, dx, dy = p["scar"]
        pts = np.array([[x0 * a * 0.7, y0 * b * 0.6], [x0 * a * 0.7 + dx * 10, y0 * b * 0.6 + dy * 6]])
        if min(pen.visible(q) for q in pts) > 0.1:
            pen.line(pen.project(pts), p["skin"] * 1.18 + 10, 0.7)


def _draw_eyes(pen: _Pen):
    p, v = pen.p, pen.v
    lm, dz = face_landmarks_3d(p, v)
    openness = 0.08 if v["blink"] else max(0.15, 1 - v["squint"])
    for i, side in ((0, -1), (1, 1)):
        vis = pen.visible(lm[i])
        if vis < 0.05:
            continue
        c = pen.project(lm[i], dz[i])[0]
        w = p["ew"] * (0.35 + 0.65 * vis)
        h = p["eh"] * openness
        brow_y = c[1] - p["brow_gap"] - 0.6 * v["brow_raise"]
        # Brow: an arc over the eye, angled outward; optional identity-specific gap (fine detail).
        bx = np.linspace(-1.15, 1.15, 9)
        brow = np.stack([c[0] + bx * w * 1.1, brow_y - p["brow_arch"] * (1 - bx**2) + side * bx * p["brow_angle"] * w],
                        axis=1)
        brow_col = p["hair"] * 0.7
        if p["brow_notch"] is not None:
            cut = int(p["brow_notch"] * 8)
            pen.line(brow[:cut + 1], brow_col, p["brow_t"])
            pen.line(brow[cut + 1:], brow_col, p["brow_t"])
        else:
            pen.line(brow, brow_col, p["brow_t"])
        pen.fill(_ellipse(c[0], c[1] + 0.8, w * 1.05, p["eh"] * 1.4, 16, 0, math.pi), p["skin"] * 0.8)  # bag shadow
        if h < 0.6:
            pen.line(np.array([[c[0] - w, c[1]], [c[0] + w, c[1]]]), (30, 30, 40), 0.8)
            continue
        eye = _ellipse(c[0], c[1], w, h, 24)
        pen.fill(eye, (225, 228, 232))
        iris_c = c + np.array([pen.sy * 1.5, 0])
        ir = p["iris"] * p["eh"] * 1.6
        pen.dot(iris_c, ir, p["eye"])
        pen.dot(iris_c + [0.3, -0.2], ir * 0.55, p["iris_ring"] * 0.35 + p["eye"] * 0.65)
        pen.dot(iris_c, ir * 0.35, (15, 15, 18))
        pen.dot(iris_c + [-ir * 0.3, -ir * 0.3], ir * 0.15, (245, 245, 245))
        pen.line(_ellipse(c[0], c[1], w, h, 14, math.pi, 2 * math.pi), (25, 25, 35), 0.9)


def _draw_nose(pen: _Pen):
    p = pen.p
    tip = pen.project(np.array([0, p["ny"]]), p["nz"])[0]
    root = pen.project(np.array([0, p["ey"] + 2]), 1.0)[0]
    shade = p["skin"] * 0.82
    side = 1 if pen.sy >= 0 else -1
    bridge = np.stack([np.linspace(root[0], tip[0], 5) - side * 2.5, np.linspace(root[1], tip[1], 5)], axis=1)
    pen.line(bridge, shade, 1.0)
    nw = p["nw"] * (0.5 + 0.5 * pen.cy)
    base = pen.project(np.array([0, p["ny"] + 3.0]), p["nz"] * 0.6)[0]
    for s in (-1, 1):
        pen.fill(_ellipse(base[0] + s * nw * 0.5, base[1], 1.6, 0.9, 10), p["skin"] * 0.45)
    pen.line(_ellipse(base[0], base[1] - 0.5, nw * 0.75, 2.2, 10, 0.15 * math.pi, 0.85 * math.pi), shade, 0.9)
    pen.dot(tip + [0, -1], 1.3, np.minimum(p["skin"] * 1.12 + 8, 255))


def _draw_mouth(pen: _Pen):
    p, v = pen.p, pen.v
    lm, dz = face_landmarks_3d(p, v)
    left, right = pen.project(lm[3], dz[3])[0], pen.project(lm[4], dz[4])[0]
    mid = (left + right) / 2
    t = np.linspace(0, 1, 11)
    xs = left[0] + (right[0] - left[0]) * t
    ys = left[1] + (right[1] - left[1]) * t
    bow = np.sin(math.pi * t)
    smile_curve = -v["smile"] * 2.5 * (1 - bow)  # corners go up
    opening = v["open"] * 5.0
    upper_top = np.stack([xs, ys - p["lip_t"] * bow * 0.9 + smile_curve], axis=1)
    centre_line = np.stack([xs, ys + bow * (0.6 + v["smile"] * 1.2) + smile_curve], axis=1)
    lower_bot = np.stack([xs, ys + bow * (p["lip_t"] * 1.1 + opening + 0.6) + smile_curve], axis=1)
    lip = p["skin"] * 0.75 + np.array([0, -10, 35.0]) * (0.5 + p["lip_red"])
    pen.fill(np.concatenate([upper_top, lower_bot[::-1]]), lip)
    if opening > 0.5:
        inner_low = centre_line + np.stack([np.zeros(11), bow * opening], axis=1)
        pen.fill(np.concatenate([centre_line, inner_low[::-1]]), (35, 30, 60))
        pen.fill(np.concatenate([centre_line, centre_line[::-1] + [0, 1.3]]), (225, 230, 235))
    else:
        pen.line(centre_line, lip * 0.55, 0.8)
    del mid


def _draw_beard(pen: _Pen):
    p, v = pen.p, pen.v
    if p["beard"] == 0:
        return
    hair = _hair_colour(p, v)
    col = p["skin"] * (1 - p["beard_density"]) + hair * p["beard_density"]
    a, b = pen.a, pen.b
    lm, _ = face_landmarks_3d(p, v)
    if p["beard"] in (1, 3):  # moustache
        y = lm[3, 1] - p["lip_t"] - 1.5
        pts = np.array([[-p["mx"] * 1.05, y + 2], [0, y - 1.5], [p["mx"] * 1.05, y + 2], [0, y + 1.0]])
        pen.fill(pen.project(pts), col)
    if p["beard"] in (2, 3):  # chin beard
        y0 = lm[3, 1] + p["lip_t"] + 1.5
        xs = np.linspace(-0.55, 0.55, 9) * a
        bottom = b * 0.98 - np.abs(xs) * 0.2
        pts = np.concatenate([np.stack([xs, np.full(9, y0)], axis=1), np.stack([xs[::-1], bottom[::-1]], axis=1)])
        pen.fill(pen.project(pts), col)


def _draw_front_hair(pen: _Pen):
    p, v = pen.p, pen.v
    style = p["hair_style"]
    hair = _hair_colour(p, v)
    a, b = pen.a, pen.b
    hl = p["hairline"] + v["hair_jitter"] + (v["age"] * 4 if style != 0 else 0)
    vol = max(1.0, p["hair_volume"] + v["hair_jitter"])
    if style == 0:  # (near) bald: a thin fringe at the sides only
        for s in (-1, 1):
            pts = np.array([[s * a * 0.75, -b * 0.45], [s * a * 1.02, -b * 0.25], [s * a * 1.0, 0.0],
                            [s * a * 0.85, -0.1 * b]])
            pen.fill(pen.project(pts), hair)
        return
    xs = np.linspace(-1.0, 1.0, 15)
    if style == 2:  # straight fringe
        front = hl + 7 + 1.5 * np.cos(xs * 9)
    elif style == 3:  # side part
        front = hl + 4 * np.clip(1 - np.abs(xs - p["part"]) * 1.5, 0, 1) + 2 * (xs - p["part"])
    else:
        front = hl + 3 * xs**2
    hx = xs * a * 1.02
    front_pts = np.stack([hx, np.minimum(front, -0.2 * b)], axis=1)
    proj_front = pen.project(front_pts)
    half_w = math.sqrt((a * pen.cy) ** 2 + (pen.c * pen.sy) ** 2)
    top = -b * pen.cp - vol
    crown = _ellipse(0, -0.15 * b, half_w + vol * 0.6, abs(top + 0.15 * b), 20, math.pi, 2 * math.pi)
    side_pts = np.array([[half_w + vol * 0.5, -0.1 * b], [-half_w - vol * 0.5, -0.1 * b]])
    pen.fill(np.concatenate([proj_front, side_pts[:1], crown[::-1], side_pts[1:]]), hair)
    # Strands: identity-independent streaks only visible at high resolution.
    for k in range(4):
        x0 = -half_w * 0.6 + k * half_w * 0.4
        pen.line(np.array([[x0, top * 0.85], [x0 + 3, hl * 0.9]]), hair * 1.25 + 8, 0.5)


def _draw_age(pen: _Pen):
    p, v = pen.p, pen.v
    age = v["age"]
    if age < 0.3:
        return
    k = (age - 0.3) / 0.7
    wr = p["skin"] * (1 - 0.25 * k)
    hl = p["hairline"]
    for i in range(1 + int(k * 3)):
        y = hl + 6 + i * 3.2
        pen.line(pen.project(np.array([[-12, y], [0, y - 0.8], [12, y]])), wr, 0.6 + 0.4 * k)
    lm, _ = face_landmarks_3d(p, v)
    for s in (-1, 1):  # nasolabial folds
        pts = np.array([[s * (p["nw"] * 0.8 + 1), p["ny"] + 1], [s * (p["mx"] + 3), lm[3, 1] + 3]])
        pen.line(pen.project(pts), wr, 0.6 + 0.6 * k)
        crow = np.array([[s * (p["ex"] + p["ew"] + 1), p["ey"] - 1], [s * (p["ex"] + p["ew"] + 4), p["ey"] - 2.5]])
        pen.line(pen.project(crow), wr, 0.5 + 0.3 * k)


def _draw_glasses(pen: _Pen):
    p, v = pen.p, pen.v
    lm, dz = face_landmarks_3d(p, v)
    frame = (20, 20, 20) if p["texture_seed"] % 2 else (40, 60, 120)
    cs = []
    for i in range(2):
        c = pen.project(lm[i], dz[i] + 3)[0]
        cs.append(c)
        if pen.visible(lm[i]) > 0.05:
            pen.line(_ellipse(c[0], c[1], p["ew"] * 1.45 * (0.4 + 0.6 * abs(pen.cy)), p["eh"] * 2.2, 20), frame, 1.0)
    pen.line(np.array([cs[0] + [p["ew"] * 1.3, 0], cs[1] - [p["ew"] * 1.3, 0]]), frame, 1.0)


def _draw_occluder(pen: _Pen, seed_bg: int):
    p, v = pen.p, pen.v
    r = keyed_rng(seed_bg, 11)
    lm, dz = face_landmarks_3d(p, v)
    kind = v["occluder"]
    if kind == 1:  # a bar across the face
        y = r.uniform(-30, 35)
        h = r.uniform(5, 14)
        pen.fill(np.array([[-70, y], [70, y + r.uniform(-8, 8)], [70, y + h], [-70, y + h]]), r.uniform(0, 255, 3))
    elif kind == 2:  # hand-like skin blob near the chin or cheek
        cx, cy = r.uniform(-35, 35), r.uniform(5, 45)
        pen.fill(_ellipse(cx, cy, r.uniform(10, 18), r.uniform(14, 22), 20), p["skin"] * r.uniform(0.85, 1.05))
    elif kind == 3:  # surgical mask
        y0 = p["ny"] + 1
        pts = np.array([[-pen.a * 0.95, y0], [0, y0 - 4], [pen.a * 0.95, y0], [pen.a * 0.7, pen.b * 0.85],
                        [-pen.a * 0.7, pen.b * 0.85]])
        pen.fill(pen.project(pts), r.choice([[230, 225, 220], [200, 170, 120], [60, 60, 60]]))
    elif kind == 4:  # sunglasses
        for i in range(2):
            c = pen.project(lm[i], dz[i] + 3)[0]
            pen.fill(_ellipse(c[0], c[1], p["ew"] * 1.4, p["eh"] * 2.2, 16), (18, 18, 20))
    else:  # hat brim over the forehead
        y = p["hairline"] + r.uniform(-2, 10)
        pen.fill(np.array([[-80, y - 40], [80, y - 40], [80, y], [-80, y + 2]]), r.uniform(0, 255, 3))


@functools.lru_cache(maxsize=1)
def _noise_tile() -> np.ndarray:
    return keyed_rng(12345).standard_normal((384, 384, 3), dtype=np.float32)


def noise_patch(r: np.random.Generator, shape) -> np.ndarray:
    """Unit Gaussian noise: a random window of a fixed tile (drawing fresh noise per image dominated the cost)."""
    tile = _noise_tile()
    h, w = shape[:2]
    if h > tile.shape[0] or w > tile.shape[1]:
        return r.standard_normal(shape, dtype=np.float32)
    y, x = int(r.integers(tile.shape[0] - h + 1)), int(r.integers(tile.shape[1] - w + 1))
    patch = tile[y:y + h, x:x + w]
    return patch[::-1] if r.uniform() < 0.5 else patch


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return xx / w - 0.5, yy / h - 0.5


def _lighting(img, v, seed_bg):
    """Directional light gradient, brightness, colour cast, gamma (via a lookup table) and sensor noise."""
    h, w = img.shape[:2]
    gx, gy = _grid(h, w)
    d = (math.cos(v["light_dir"]) * 2) * gx + (math.sin(v["light_dir"]) * 2) * gy
    gain = (v["bright"] * (1 + v["light_amp"] * d))[:, :, None] * np.asarray(v["cast"], np.float32)
    lit = img.astype(np.float32) * gain
    if v["noise"] > 0:
        lit += noise_patch(keyed_rng(seed_bg, 13), lit.shape) * np.float32(v["noise"])
    lit = np.clip(lit + 0.5, 0, 255).astype(np.uint8)
    lut = (np.clip((np.arange(256) / 255.0) ** v["gamma"] * 255 + 0.5, 0, 255)).astype(np.uint8)
    return cv2.LUT(lit, lut)
