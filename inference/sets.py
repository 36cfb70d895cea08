"""Embed validation sets with any `inference.backends` backend (an ONNX file, or a torch backbone outside Lightning):
image and horizontal flip, in dataset order, as the training module does
(`training.lit_module.FaceRecognitionModule.validation_step`).

`task=evaluate` and `task=calibrate` use it for ONNX models; checkpoints keep the Lightning path (DDP, same code as
training). The result has the layout of `tasks.evaluate`'s embeddings cache: {set: {index, emb, norm, emb_flip,
norm_flip}}.
"""

from __future__ import annotations

import numpy as np

from inference.backends import Backend


def embed_dataset(backend: Backend, dataset, batch_size: int = 256, num_workers: int = 0) -> dict[str, np.ndarray]:
    """One dataset of `(uint8 CHW BGR image, index)` items -> {index, emb, norm, emb_flip, norm_flip} by index."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("index", "emb", "norm", "emb_flip", "norm_flip")}
    for images, index in loader:
        hwc = np.ascontiguousarray(np.asarray(images).transpose(0, 2, 3, 1))  # backends take [B, H, W, 3] BGR
        emb, norm = backend.embed(hwc)
        emb_flip, norm_flip = backend.embed(np.ascontiguousarray(hwc[:, :, ::-1]))
        for key, value in zip(parts, (np.asarray(index), emb, norm, emb_flip, norm_flip), strict=True):
            parts[key].append(value)
    out = {k: np.concatenate(v) for k, v in parts.items()}
    order = np.argsort(out["index"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def embed_suite(backend: Backend, suite, batch_size: int = 256, num_workers: int = 0) -> dict[str, dict]:
    """Every set of a `validation.suite.ValidationSuite`, {set name: embeddings} (see `embed_dataset`)."""
    return {name: embed_dataset(backend, dataset, batch_size, num_workers)
            for name, dataset in zip(suite.names, suite.datasets(), strict=True)}
