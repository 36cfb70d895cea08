"""Embedding backends: anything with `embed(batch_uint8_bgr [B,112,112,3]) -> (unit embeddings [B,D], norms [B,1])`.

`TorchBackend` runs a backbone of `models` (our checkpoints, AdaFace `.ckpt`, InsightFace `iresnet`); `OnnxBackend`
runs an exported model with onnxruntime, colour order and normalisation from its metadata.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

import numpy as np


class Backend(Protocol):
    name: str

    def embed(self, batch_uint8_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[B,H,W,3] uint8 BGR -> (unit embeddings [B,D] float32, norms [B,1] float32)."""


def _as_unit(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(features, axis=1, keepdims=True).astype(np.float32)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32), norms


class TorchBackend:
    """A backbone from `models`; colour order and normalisation come from `model.meta` via `models.preprocess`."""

    def __init__(self, model, device: str = "cpu"):
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.name = f"torch:{model.meta.get('name', type(model).__name__)}"

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | None, arch: str, device: str = "cpu",
                        **backbone_kwargs) -> TorchBackend:
        """Build `arch` and load `checkpoint` (ours, AdaFace .ckpt or InsightFace .pth); None = random weights."""
        import models

        model = models.build_backbone(arch, **backbone_kwargs)
        if checkpoint is not None:
            models.load_pretrained(model, str(checkpoint))
        return cls(model, device=device)

    def embed(self, batch_uint8_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import models

        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch_uint8_bgr.transpose(0, 3, 1, 2))).to(self.device)
        with torch.inference_mode():
            emb, norm = self.model(models.preprocess(x, self.model.meta))
        return emb.float().cpu().numpy(), norm.float().reshape(-1, 1).cpu().numpy()


class OnnxBackend:
    """An ONNX model run by onnxruntime. Its metadata says the expected colour order (`color`: BGR or RGB) and, for
    float inputs, the normalisation (`mean`, `std`); a uint8 input gets the raw pixels."""

    def __init__(self, path: str | Path, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        self.session = ort.InferenceSession(str(self.path), providers=providers or ["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        self.color = props.get("color", props.get("input_color", "BGR")).upper()
        if self.color not in ("BGR", "RGB"):
            raise ValueError(f"{self.path}: metadata 'color' must be BGR or RGB, got {self.color!r}")
        self.mean = float(props.get("mean", 0.5))
        self.std = float(props.get("std", 0.5))
        inp = self.session.get_inputs()[0]
        self.input_name, self.uint8_input = inp.name, "uint8" in inp.type
        self.name = f"onnx:{self.path.name}"

    def embed(self, batch_uint8_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(batch_uint8_bgr.transpose(0, 3, 1, 2))
        if self.color == "RGB":
            x = np.ascontiguousarray(x[:, ::-1])
        if not self.uint8_input:
            x = ((x.astype(np.float32) / 255.0 - self.mean) / self.std).astype(np.float32)
        outputs = self.session.run(None, {self.input_name: x})
        if len(outputs) >= 2:  # (unit embedding, norm) like the torch backbones
            return outputs[0].astype(np.float32), outputs[1].astype(np.float32).reshape(-1, 1)
        return _as_unit(outputs[0].astype(np.float32))


def build_backend(checkpoint: str | Path | None = None, arch: str | None = "ir_50", device: str = "cpu",
                  backbone_kwargs: dict | None = None) -> Backend:
    """`.onnx` files run through onnxruntime; anything else is a torch checkpoint for backbone `arch`."""
    if checkpoint is not None and str(checkpoint).endswith(".onnx"):
        return OnnxBackend(checkpoint)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    if arch is None:
        raise ValueError("a torch checkpoint needs the backbone name (arch=ir_50, iresnet_r100, tiny, ...)")
    if checkpoint is None:
        warnings.warn(f"no checkpoint given: {arch} has random weights (fine for tests, useless for matching)",
                      stacklevel=2)
    return TorchBackend.from_checkpoint(checkpoint, arch, device=device, **(backbone_kwargs or {}))
