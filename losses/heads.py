"""Margin heads (docs/method.md, "Margin heads"): AdaFace, ArcFace, CosFace and a plain softmax classifier.

Every head has a `kernel` parameter `[embedding_size, num_classes]` (columns = class centres) and shares
`forward(embeddings, norms, labels) -> logits [B, C]`; the caller applies cross-entropy.

Margins are computed in fp32 with autocast disabled: under fp16/bf16 autocast `acos` near +-1 and the subtraction of
small margins from cosines close to 1 lose most of their precision.
Only the target column of each row is modified, so `acos`/`cos` run on B values instead of B x C.
"""

import math

import torch
from torch import nn

from common.registry import Registry

HEADS = Registry("head")


def build_head(name: str, embedding_size: int = 512, num_classes: int = 1000, **kwargs) -> nn.Module:
    """Build a head by name (adaface, arcface, cosface, softmax); extra kwargs go to the head (m, s, h, ...)."""
    return HEADS.build(name, embedding_size=embedding_size, num_classes=num_classes, **kwargs)


def build_head_from_node(node, embedding_size: int, num_classes: int) -> nn.Module:
    """From the `head` config node `{name: adaface, m: 0.4, ...}`; sizes come from the backbone and the data."""
    return HEADS.build_from_node(node, embedding_size=embedding_size, num_classes=num_classes)


class MarginHead(nn.Module):
    """Shared parts: the class-centre kernel and fp32 cosine computation."""

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        kernel = torch.empty(embedding_size, num_classes).uniform_(-1, 1)
        self.kernel = nn.Parameter(kernel / kernel.norm(dim=0, keepdim=True))  # unit-length columns

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """cos between (unit) embeddings and normalised class centres, fp32 [B, C]."""
        kernel = self.kernel.float()
        return embeddings.float() @ (kernel / kernel.norm(dim=0, keepdim=True))

    @staticmethod
    def _check(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
            raise ValueError(f"labels must be [B] matching embeddings [B, D]; got labels {tuple(labels.shape)}, "
                             f"embeddings {tuple(embeddings.shape)}")
        return labels.long().view(-1, 1)


@HEADS.register("adaface")
class AdaFaceHead(MarginHead):
    """AdaFace: a feature-norm-adaptive margin. Low-norm (low-quality) samples get an ArcFace-like angular margin,
    high-norm samples a CosFace-like additive one.

    After each forward, `last_margin_scaler` ([B,1], detached, in [-1, 1]) holds the paper's z-hat of that forward,
    computed from the same EMA update (QGFace's quality gates read it instead of recomputing it).
    Buffers `batch_mean` / `batch_std` are the EMA of the batch norm statistics, updated *before* use, in training
    mode only (eval forwards use the stored statistics and leave them unchanged).
    """

    def __init__(self, embedding_size: int = 512, num_classes: int = 1000, m: float = 0.4, h: float = 0.333,
                 s: float = 64.0, t_alpha: float = 0.01, eps: float = 1e-3, init_mean: float = 20.0,
                 init_std: float = 100.0):
        super().__init__(embedding_size, num_classes)
        self.m, self.h, self.s, self.t_alpha, self.eps = m, h, s, t_alpha, eps
        self.register_buffer("batch_mean", torch.full((1,), float(init_mean)))
        self.register_buffer("batch_std", torch.full((1,), float(init_std)))
        self.last_margin_scaler: torch.Tensor | None = None

    def forward(self, embeddings: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = self._check(embeddings, labels)
        with torch.autocast(embeddings.device.type, enabled=False):
            cos = self.cosine(embeddings).clamp(-1 + self.eps, 1 - self.eps)
            safe_norm = norms.detach().float().view(-1, 1).clamp(0.001, 100)
            if self.training:
                with torch.no_grad():
                    mean = safe_norm.mean()
                    # std of a single sample is undefined (NaN): keep the running value
                    std = safe_norm.std() if safe_norm.numel() > 1 else self.batch_std[0].clone()
                    self.batch_mean.mul_(1 - self.t_alpha).add_(self.t_alpha * mean)
                    self.batch_std.mul_(1 - self.t_alpha).add_(self.t_alpha * std)
            scaler = (self.h * (safe_norm - self.batch_mean) / (self.batch_std + self.eps)).clamp(-1, 1)
            self.last_margin_scaler = scaler.detach()

            target = cos.gather(1, labels)
            theta_m = (torch.acos(target) - self.m * scaler).clamp(self.eps, math.pi - self.eps)  # angular
            target = torch.cos(theta_m) - (self.m + self.m * scaler)  # additive
            return self.s * cos.scatter(1, labels, target)


@HEADS.register("arcface")
class ArcFaceHead(MarginHead):
    """ArcFace: target logit s*cos(clamp(theta + m, eps, pi - eps))."""

    def __init__(self, embedding_size: int = 512, num_classes: int = 1000, m: float = 0.5, s: float = 64.0,
                 eps: float = 1e-3):
        super().__init__(embedding_size, num_classes)
        self.m, self.s, self.eps = m, s, eps

    def forward(self, embeddings: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = self._check(embeddings, labels)
        with torch.autocast(embeddings.device.type, enabled=False):
            cos = self.cosine(embeddings).clamp(-1 + self.eps, 1 - self.eps)
            theta_m = (torch.acos(cos.gather(1, labels)) + self.m).clamp(self.eps, math.pi - self.eps)
            return self.s * cos.scatter(1, labels, torch.cos(theta_m))


@HEADS.register("cosface")
class CosFaceHead(MarginHead):
    """CosFace: target logit s*(cos - m)."""

    def __init__(self, embedding_size: int = 512, num_classes: int = 1000, m: float = 0.4, s: float = 64.0):
        super().__init__(embedding_size, num_classes)
        self.m, self.s = m, s

    def forward(self, embeddings: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = self._check(embeddings, labels)
        with torch.autocast(embeddings.device.type, enabled=False):
            cos = self.cosine(embeddings)
            return self.s * cos.scatter(1, labels, cos.gather(1, labels) - self.m)


@HEADS.register("softmax")
class SoftmaxHead(MarginHead):
    """Plain softmax baseline: a bias-free linear classifier on the raw feature (embedding * norm), no margin."""

    def forward(self, embeddings: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check(embeddings, labels)
        with torch.autocast(embeddings.device.type, enabled=False):
            return (embeddings.float() * norms.float().view(-1, 1)) @ self.kernel.float()
