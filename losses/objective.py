"""Training objectives: what the LightningModule minimises given the head and a step's embeddings.

Interface (what `training.lit_module` calls every training step):
`objective(head, embeddings, norms, labels, num_views) -> (loss, logs)` where embeddings [V*B, D] and norms [V*B, 1]
stack the views (rows 0..B-1 = view 0 = L, rows B..2B-1 = view 1 = H; docs/method.md, "QGFace") and labels has B
rows. `logs` maps metric names to detached float tensors (the LightningModule logs them every step).

- `classification`: cross-entropy of the head logits over all V*B rows (settings Baseline, A and D).
- `qgface`: quality-gated classification + queue contrastive loss (settings B, C and QGFace); step order below.
"""

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from common.registry import Registry
from losses.qgface import (
    ContrastiveLoss,
    classification_gate,
    pair_gate,
    pair_quality,
    quality_from_margin_scaler,
)
from losses.queue import EmbeddingQueue, gather_from_all_ranks

QUEUE_MODES = ("proxy", "fifo", "batch", "momentum", "none")
ANCHORINGS = ("one_way", "two_way")


OBJECTIVES = Registry("objective")


@OBJECTIVES.register("classification")
class ClassificationObjective(nn.Module):
    """Plain margin-head classification: every row (every view) is classified with its identity label."""

    needs_momentum_keys = False

    def forward(self, head: nn.Module, embeddings: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor,
                num_views: int = 1, key_embeddings: torch.Tensor | None = None):
        all_labels = labels.repeat(num_views)
        logits = head(embeddings, norms, all_labels)
        loss = F.cross_entropy(logits.float(), all_labels)
        return loss, {"loss_cls": loss.detach()}


@OBJECTIVES.register("qgface")
class QGFaceObjective(nn.Module):
    """QGFace: L = L_cls(gated) + w * L_con, with the released code's step order (docs/method.md, "Step order").

    1. Classification of all V*B rows through the head (for AdaFace its EMA norm statistics come from those V*B
       norms); quality n = (head.last_margin_scaler + 1) / 2 of that same forward; each logit row is multiplied by
       the gate sigmoid(2*s*(n - b)) (no gradient), closed rows stay in the mean as near-constants.
    2. Enqueue this step's V*B detached embeddings (all_gather-ed from every rank), labels and class-centre snapshots
       BEFORE the contrastive loss, so the current batch provides negatives (the sample's own views are same-identity
       entries and are masked).
    3. Contrastive loss on pairs (q = L view, k = H view) gated by pair quality < b; one-way (paper: anchors q,
       positive k detached) or two-way (released: anchors q and k). Skipped when num_views == 1 or queue='none'.

    threshold=None switches the partition off: every sample is classified and every pair contrasted.
    queue: proxy (FIFO + drift correction, default), fifo (no correction), batch (only this step's gathered keys),
    momentum (FIFO of momentum-encoder keys; the LightningModule passes `key_embeddings`, see MomentumEncoder),
    none (contrastive loss off).
    """

    def __init__(
        self,
        threshold: float | None = 0.2,
        gate_scale: float = 64.0,
        loss_weight: float = 1.0,
        queue: str = "proxy",
        queue_size: int | None = None,
        anchoring: str = "one_way",
        detach_positive: bool = True,
        gate: str = "sgn",
        pair_quality: str = "min",
        key_momentum: float = 0.999,
        contrastive: dict | None = None,
    ) -> None:
        super().__init__()
        if queue not in QUEUE_MODES:
            raise ValueError(f"objective.queue must be one of {QUEUE_MODES}, got {queue!r}")
        if anchoring not in ANCHORINGS:
            raise ValueError(f"objective.anchoring must be one of {ANCHORINGS}, got {anchoring!r}")
        if threshold is not None and not 0.0 < threshold < 1.0:
            raise ValueError(f"objective.threshold must be in (0, 1) or null (partition off), got {threshold}")
        self.threshold = threshold
        self.gate_scale = gate_scale
        self.loss_weight = loss_weight
        self.queue_mode = queue
        self.anchoring = anchoring
        self.detach_positive = detach_positive
        self.gate = gate
        self.pair_quality_mode = pair_quality
        self.key_momentum = key_momentum  # for the LightningModule's MomentumEncoder (queue='momentum')
        pair_gate(torch.zeros(1), 0.5, gate)  # validate names early
        self.contrastive = ContrastiveLoss(**(contrastive or {}))  # its own node: scale, mask_mode, margin, ...
        self.queue = (EmbeddingQueue(queue_size, drift_correction=(queue == "proxy"))
                      if queue in ("proxy", "fifo", "momentum") else None)

    @property
    def needs_momentum_keys(self) -> bool:
        return self.queue_mode == "momentum"

    def forward(self, head: nn.Module, embeddings: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor,
                num_views: int = 1, key_embeddings: torch.Tensor | None = None):
        batch = labels.shape[0]
        all_labels = labels.repeat(num_views)
        logits = head(embeddings, norms, all_labels)
        n = self._quality(head, embeddings.shape[0])
        cls_gate = classification_gate(n, self.threshold, self.gate_scale)
        loss_cls = F.cross_entropy(logits.float() * cls_gate.unsqueeze(1), all_labels)
        logs = {
            "loss_cls": loss_cls.detach(),
            "qg/quality_mean": n.mean(),
            "qg/cls_gate_mean": cls_gate.mean(),
            "qg/cls_gated_out": self._below(n).float().mean(),
            "qg/quality_min": n.min(),
        }
        if num_views >= 2:  # the degraded L view should read lower than the H view
            logs["qg/quality_l"], logs["qg/quality_h"] = n[:batch].mean(), n[batch:2 * batch].mean()
        if num_views < 2 or self.queue_mode == "none":
            return loss_cls, logs

        if self.needs_momentum_keys and key_embeddings is None:
            raise ValueError("objective.queue='momentum' needs key_embeddings from the LightningModule's "
                             "MomentumEncoder (losses.queue.MomentumEncoder)")
        keys = key_embeddings.detach() if self.needs_momentum_keys else embeddings.detach()
        negatives, neg_labels = self._negatives(head, keys, labels, num_views)

        n_q, n_k = n[:batch], n[batch:2 * batch]
        n_pair = pair_quality(n_q, n_k, self.pair_quality_mode)
        gate = pair_gate(n_pair, self.threshold, self.gate)
        q, k = embeddings[:batch], embeddings[batch:2 * batch]
        pos_q, pos_k = (key_embeddings[batch:2 * batch], key_embeddings[:batch]) if self.needs_momentum_keys else (k, q)
        if self.detach_positive:
            pos_q, pos_k = pos_q.detach(), pos_k.detach()
        if self.anchoring == "one_way":
            anchors, positives, row_labels, row_gate = q, pos_q, labels, gate
        else:
            anchors = torch.cat([q, k])
            positives = torch.cat([pos_q, pos_k])
            row_labels, row_gate = labels.repeat(2), gate.repeat(2)
        excluded = row_labels.unsqueeze(1) == neg_labels.unsqueeze(0)
        loss_con, con_logs = self.contrastive(anchors, positives, negatives, excluded, row_gate)
        logs.update(con_logs)
        logs.update({
            "loss_con": loss_con.detach(),
            "qg/pairs_selected": self._below_pair(n_pair).float().mean(),
            "qg/pair_gate_mean": gate.mean(),
            "qg/num_negatives": torch.tensor(float(negatives.shape[0]), device=embeddings.device),
        })
        return loss_cls + self.loss_weight * loss_con, logs

    # --- helpers -------------------------------------------------------------------------------------------------
    def _quality(self, head: nn.Module, rows: int) -> torch.Tensor:
        scaler = getattr(head, "last_margin_scaler", None)
        if scaler is None or scaler.numel() != rows:
            raise ValueError("QGFaceObjective needs an AdaFace head exposing `last_margin_scaler` for the same "
                             f"{rows} rows (set head=adaface); got {type(head).__name__}")
        return quality_from_margin_scaler(scaler)

    def _below(self, n: torch.Tensor) -> torch.Tensor:
        """Samples gated out of classification (n <= b); none when the partition is off."""
        return torch.zeros_like(n, dtype=torch.bool) if self.threshold is None else n <= self.threshold

    def _below_pair(self, n_pair: torch.Tensor) -> torch.Tensor:
        """Pairs selected for the contrastive loss (n_pair < b); all when the partition is off."""
        return torch.ones_like(n_pair, dtype=torch.bool) if self.threshold is None else n_pair < self.threshold

    @torch.no_grad()
    def _negatives(self, head: nn.Module, keys: torch.Tensor, labels: torch.Tensor, num_views: int):
        """Gather this step's keys from all ranks; enqueue them (before the loss) and return the negatives."""
        gathered = gather_from_all_ranks(keys.float())
        gathered_labels = gather_from_all_ranks(labels.repeat(num_views))
        kernel = getattr(head, "kernel", None)
        if self.queue is None:  # batch-only negatives: exactly this step's gathered keys
            return gathered, gathered_labels
        centres = kernel.detach().float().t()[gathered_labels] if kernel is not None else None
        self.queue.enqueue(gathered, gathered_labels, centres, default_size=kernel.shape[1] if kernel is not None
                           else None)
        if gathered.shape[0] > self.queue.embeddings.shape[0]:
            warnings.warn(f"QGFace queue ({self.queue.embeddings.shape[0]} entries) is smaller than one step's "
                          f"gathered keys ({gathered.shape[0]}): only the newest keys serve as negatives", stacklevel=1)
        return self.queue.entries(kernel)


def build_objective(name: str, **kwargs) -> nn.Module:
    """Objective by name: 'classification' or 'qgface' (kwargs go to the class)."""
    return OBJECTIVES.build(name, **kwargs)


def build_objective_from_node(node) -> nn.Module:
    """From the `objective` config node: `{name: qgface, threshold: 0.2, ..., contrastive: {...}}`."""
    return OBJECTIVES.build_from_node(node)
