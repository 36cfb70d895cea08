"""INT8 (ONNX Runtime static quantization, QDQ, per-channel weights) and fp16 versions of an exported fp32 ONNX
model, and the check of an artifact against fp32 torch on held-out faces
(docs/deployment.md, "Quantized and half-precision ONNX").

    python -m deploy.export --backbone tiny --checkpoint last.ckpt --out tiny.onnx --int8 --calibration train.rec
    python -m deploy.export --backbone tiny --checkpoint last.ckpt --out tiny.onnx --fp16

Calibration and held-out faces are aligned crops drawn from the same source (a `.rec` training pack or a folder of
aligned images), disjoint: a seeded shuffle, the first `count` for calibration, the next `check_count` for the check.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from common import atomic
from common.images import is_image_file
from deploy.onnx_graph import compact_graph, with_metadata

# the default acceptance of an artifact: mean cosine to fp32 torch over the held-out faces
MIN_MEAN_COSINE = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.99}


def _read_rec(path: Path, count: int, seed: int) -> list[np.ndarray]:
    from dataset.formats import image_keys
    from dataset.recordio import MXIndexedRecordIO, unpack_img

    idx = path.with_suffix(".idx")
    if not idx.is_file():
        raise FileNotFoundError(f"{path}: the .idx index beside it is missing ({idx})")
    rec = MXIndexedRecordIO(str(idx), str(path), "r")
    try:
        keys = image_keys(rec)
        order = np.random.default_rng(seed).permutation(len(keys))[:count]
        return [unpack_img(rec.read_idx(keys[i]), 1)[1] for i in order]
    finally:
        rec.close()


def read_faces(source, count: int, size: int = 112, seed: int = 0) -> np.ndarray:
    """`count` aligned faces [N, size, size, 3] uint8 BGR from a `.rec` pack or a folder (recursive) of crops,
    shuffled with `seed`; crops of another size are resized (area/cubic)."""
    source = Path(source)
    if source.suffix == ".rec":
        faces = _read_rec(source, count, seed)
    elif source.is_dir():
        paths = sorted(p for p in source.rglob("*") if is_image_file(p))
        order = np.random.default_rng(seed).permutation(len(paths))[:count]
        faces = []
        for i in order:
            img = cv2.imread(str(paths[i]), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{paths[i]}: unreadable image in the calibration folder")
            faces.append(img)
    else:
        raise FileNotFoundError(f"calibration source must be a .rec file or a folder of aligned faces: {source}")
    if len(faces) < count:
        raise ValueError(f"{source}: {count} faces needed (calibration + check), only {len(faces)} there")
    out = np.empty((len(faces), size, size, 3), np.uint8)
    for i, img in enumerate(faces):
        if img is None:
            raise ValueError(f"{source}: a calibration image could not be decoded")
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        if img.shape[:2] != (size, size):
            interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC
            img = cv2.resize(img, (size, size), interpolation=interp)
        out[i] = img
    return out


def model_inputs(faces_bgr: np.ndarray, meta: dict) -> np.ndarray:
    """uint8 BGR [N,H,W,3] -> the exported model's input: normalised float [N,3,H,W] in its colour order."""
    from models import preprocess

    return preprocess(torch.from_numpy(np.ascontiguousarray(faces_bgr.transpose(0, 3, 1, 2))), meta).numpy()


class _Batches:
    """onnxruntime.quantization.CalibrationDataReader: the calibration inputs in batches."""

    def __init__(self, x: np.ndarray, batch_size: int):
        self.batches = iter([{"input": x[i:i + batch_size]} for i in range(0, len(x), batch_size)])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # not needed by the MinMax calibrator: one pass
        pass


def quantize_int8(fp32_path, calibration: np.ndarray, batch_size: int = 32, per_channel: bool = True) -> bytes:
    """INT8 model (QDQ: QuantizeLinear/DequantizeLinear around each quantized op, uint8 activations, int8
    per-output-channel weights, MinMax ranges from `calibration` [N,3,H,W] normalised inputs) as bytes; the
    metadata of the fp32 file is kept, plus `precision: int8`."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = onnx.load(str(fp32_path))
    meta = {p.key: p.value for p in source.metadata_props}
    with tempfile.TemporaryDirectory() as tmp:
        pre, out = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # per-channel notes on rank-1 tensors (PReLU slopes, BN)
        # memory: the calibrator keeps every activation of every calibration face until the end (ir_50: tens of
        # MB per face; use fewer faces there). Its CalibMaxIntermediateOutputs option drops data, it does not merge.
        try:
            quantize_static(str(pre), str(out), _Batches(calibration.astype(np.float32), batch_size),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        finally:
            root.setLevel(level)
        proto = onnx.load(str(out))
    return compact_graph(with_metadata(proto, {**meta, "precision": "int8"})).SerializeToString()


def convert_fp16(fp32_path) -> bytes:
    """fp16 weights and activations with fp32 input and outputs (casts at the edges), `precision: fp16`."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    source = onnx.load(str(fp32_path))
    meta = {p.key: p.value for p in source.metadata_props}
    half = convert_float_to_float16(source, keep_io_types=True)
    return with_metadata(half, {**meta, "precision": "fp16"}).SerializeToString()


def compare_with_torch(model: nn.Module, artifact: bytes | str | Path, faces_bgr: np.ndarray, name: str,
                       batch_size: int = 32) -> dict:
    """Cosine per face between the artifact's and fp32 torch's embeddings on `faces_bgr`; raises on non-finite
    outputs. Returns {faces, cosine_min, cosine_mean, cosine_p01}."""
    import onnxruntime as ort

    session = ort.InferenceSession(artifact if isinstance(artifact, bytes) else str(artifact),
                                   providers=["CPUExecutionProvider"])
    model = model.float().cpu().eval()
    x = model_inputs(faces_bgr, model.meta)
    cos = []
    for i in range(0, len(x), batch_size):
        batch = x[i:i + batch_size]
        with torch.no_grad():
            ref, _ = model(torch.from_numpy(batch))
        emb, norm = session.run(["embedding", "norm"], {"input": batch})
        for what, out in (("embedding", emb), ("norm", norm)):
            if not np.isfinite(out).all():
                raise RuntimeError(f"{name}: non-finite {what} output on held-out faces {i}..{i + len(batch) - 1}")
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        cos.append((emb * ref.numpy()).sum(1))
    cos = np.concatenate(cos)
    return {"faces": int(len(cos)), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "cosine_p01": float(np.percentile(cos, 1))}


def write_artifact(model: nn.Module, data: bytes, path, precision: str, check_faces: np.ndarray | None,
                   min_mean_cosine: float | None = None, verbose: bool = True) -> dict:
    """Check `data` against fp32 torch on `check_faces` (when given), then write it atomically; a failing
    artifact is never written. Returns {path, precision, size_mb, check}."""
    path = Path(path)
    result = {"path": str(path), "precision": precision, "size_mb": len(data) / 1e6, "check": None}
    if check_faces is not None and len(check_faces):
        check = compare_with_torch(model, data, check_faces, str(path))
        limit = MIN_MEAN_COSINE[precision] if min_mean_cosine is None else min_mean_cosine
        check["min_mean_cosine"] = limit
        result["check"] = check
        if verbose:
            print(f"{precision} check on {check['faces']} held-out faces: cosine to fp32 torch mean "
                  f"{check['cosine_mean']:.5f}, min {check['cosine_min']:.5f} (mean must be >= {limit})")
        if check["cosine_mean"] < limit:
            raise RuntimeError(f"{path}: {precision} artifact's mean cosine to fp32 torch {check['cosine_mean']:.5f} "
                               f"< {limit} on held-out faces: not written")
    atomic.write_bytes(path, data)
    return result
