"""QGFace building blocks: the quality partition gates and the queue-based contrastive loss (docs/method.md, "QGFace").

Quality is read off the AdaFace head: `n = (margin_scaler + 1) / 2` in [0, 1] (no gradient). With threshold `b`:
- classification gate (a soft "n > b"): `sigmoid(2 * s * (n - b))` multiplies a sample's whole logit row;
- contrastive pair gate (a "n_pair < b"): `sgn` = 1 / 0, `cos` = (1 - cos(pi * n / b)) / 2, `linear` = n / b below b,
  0 above b (the released code's "half" range). It multiplies the row's logits, so a closed row's loss is a constant
  with zero gradient: log(K + 1) with zero_cosine masking, log(1 + kept negatives) with removal. Closed rows stay in
  the mean (the mean is over all rows, as released), so the term's effective weight is the fraction of open pairs.
`threshold=None` is "partition off": both gates open (every sample classified, every pair contrasted).

Contrastive row (paper Eq. 14), s = 64, no temperature:
    logits = g * s * [cos(a, p) - margin, cos(a, e_1), ..., cos(a, e_K)]      loss = CE(logits, target 0)
with the positive in the softmax denominator. Same-identity queue entries are removed from the negatives
(`mask_mode='remove'`, logit -inf) or get cosine 0 (`'zero_cosine'`, as released). Cosines are clamped to [-1, 1]
as released (drift-corrected entries are not unit vectors). Rescale: loss * log(129) / log(K + 1), K = all queue
entries including masked ones (magnitude of a 128-negative softmax).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

GATE_METHODS = ("sgn", "cos", "linear")
PAIR_QUALITY = ("min", "mean", "max")
MASK_MODES = ("remove", "zero_cosine")
MARGIN_MODES = ("none", "static", "dynamic")


def quality_from_margin_scaler(margin_scaler: torch.Tensor) -> torch.Tensor:
    """AdaFace margin scaler in [-1, 1] -> quality n in [0, 1], flattened to [N], without gradient."""
    return ((margin_scaler.detach().float() + 1.0) / 2.0).reshape(-1)


@torch.no_grad()
def classification_gate(n: torch.Tensor, threshold: float | None, scale: float = 64.0) -> torch.Tensor:
    """Soft 'n > b' gate for the classification rows: sigmoid(2*s*(n - b)); all ones when the partition is off."""
    if threshold is None:
        return torch.ones_like(n)
    return torch.sigmoid(2.0 * scale * (n - threshold))


def pair_quality(n_q: torch.Tensor, n_k: torch.Tensor, mode: str = "min") -> torch.Tensor:
    """Quality of a (q, k) pair: min (paper), mean or max of the two views' qualities."""
    if mode == "min":
        return torch.minimum(n_q, n_k)
    if mode == "mean":
        return (n_q + n_k) / 2.0
    if mode == "max":
        return torch.maximum(n_q, n_k)
    raise ValueError(f"pair_quality must be one of {PAIR_QUALITY}, got {mode!r}")


@torch.no_grad()
def pair_gate(n_pair: torch.Tensor, threshold: float | None, method: str = "sgn") -> torch.Tensor:
    """Contrastive gate: open (non-zero) only for pairs with quality below b; all ones when the partition is off."""
    if threshold is None:
        return torch.ones_like(n_pair)
    below = n_pair < threshold
    if method == "sgn":
        inside = torch.ones_like(n_pair)
    elif method == "cos":
        inside = (1.0 - torch.cos(math.pi * n_pair / threshold)) / 2.0
    elif method == "linear":
        inside = n_pair / threshold
    else:
        raise ValueError(f"gate must be one of {GATE_METHODS}, got {method!r}")
    return torch.where(below, inside, torch.zeros_like(n_pair))


class ContrastiveLoss(nn.Module):
    """Softmax cross-entropy of each anchor against its positive and the (queue) negatives, gated per row.

    Holds the dynamic-margin EMA (a buffer starting at `margin_init`): the mean gap between the positive cosine and
    the hardest kept negative, updated with `t_alpha` before use, as in the released code.
    """

    def __init__(
        self,
        scale: float = 64.0,
        mask_mode: str = "remove",
        margin: str = "none",
        margin_m: float = 0.4,
        margin_init: float = 0.0,
        t_alpha: float = 0.01,
        rescale: bool = True,
        rescale_reference: int = 128,
    ) -> None:
        super().__init__()
        if mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
        if margin not in MARGIN_MODES:
            raise ValueError(f"margin must be one of {MARGIN_MODES}, got {margin!r}")
        self.scale = scale
        self.mask_mode = mask_mode
        self.margin = margin
        self.margin_m = margin_m
        self.t_alpha = t_alpha
        self.rescale = rescale
        self.rescale_reference = rescale_reference
        self.register_buffer("margin_ema", torch.tensor(float(margin_init)))

    def forward(
        self,
        anchors: torch.Tensor,
        positives: torch.Tensor,
        negatives: torch.Tensor,
        neg_excluded: torch.Tensor,
        row_gate: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """anchors/positives [N, D] (unit; detach positives beforehand for stop-gradient), negatives [K, D],
        neg_excluded [N, K] bool (same identity), row_gate [N] -> (mean loss over all N rows, logs).
        Computed in fp32 even under autocast (s = 64 logits overflow fp16)."""
        with torch.autocast(device_type=anchors.device.type, enabled=False):
            return self._forward_fp32(anchors.float(), positives.float(), negatives.float(), neg_excluded, row_gate)

    def _forward_fp32(self, anchors, positives, negatives, neg_excluded, row_gate):
        cos_pos = (anchors * positives).sum(dim=1, keepdim=True)
        cos_neg = anchors @ negatives.t()
        cosine = torch.cat([cos_pos, cos_neg], dim=1).clamp(-1.0, 1.0)
        excluded = torch.cat([torch.zeros_like(neg_excluded[:, :1]), neg_excluded], dim=1)
        if self.mask_mode == "zero_cosine":
            cosine = cosine.masked_fill(excluded, 0.0)
        margin = self._margin(cosine, excluded)
        logits = cosine.clone()
        logits[:, 0] = logits[:, 0] - margin
        logits = logits * (self.scale * row_gate.detach().float().reshape(-1, 1))
        if self.mask_mode == "remove":
            logits = logits.masked_fill(excluded, float("-inf"))
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        loss = F.cross_entropy(logits, target)
        if self.rescale:
            loss = loss * (math.log(self.rescale_reference + 1) / math.log(negatives.shape[0] + 1))
        margin_log = torch.as_tensor(margin, dtype=torch.float32, device=anchors.device).detach()
        logs = {"qg/con_pos_cos": cos_pos.detach().mean(), "qg/con_margin": margin_log}
        return loss, logs

    def _margin(self, cosine: torch.Tensor, excluded: torch.Tensor) -> torch.Tensor | float:
        if self.margin == "none":
            return 0.0
        if self.margin == "static":
            return self.margin_m
        with torch.no_grad():  # dynamic: EMA of (positive - hardest negative), updated before use
            hardest = cosine[:, 1:].masked_fill(excluded[:, 1:], float("-inf")).amax(dim=1)
            gap = cosine[:, 0] - hardest
            gap = gap[torch.isfinite(gap)]
            if gap.numel() > 0 and self.training:
                self.margin_ema.mul_(1 - self.t_alpha).add_(self.t_alpha * gap.mean())
        return self.margin_ema.detach()
