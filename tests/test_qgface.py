"""QGFace gates and contrastive loss against a direct computation of (docs/method.md, "QGFace")."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losses.objective import ANCHORINGS, ClassificationObjective, QGFaceObjective, build_objective
from losses.qgface import MASK_MODES, classification_gate, pair_gate, pair_quality, quality_from_margin_scaler

S = 64.0


class StubAdaFaceHead(nn.Module):
    """Head stand-in: fixed logits independent of the embeddings and a chosen quality per row."""

    def __init__(self, quality: list[float], num_classes: int = 6, dim: int = 4) -> None:
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(dim, num_classes, generator=torch.Generator().manual_seed(1)))
        self.quality = torch.tensor(quality).unsqueeze(1)

    def forward(self, embeddings, norms, labels):
        self.last_margin_scaler = self.quality * 2 - 1  # n = (margin_scaler + 1) / 2
        return torch.zeros(embeddings.shape[0], self.kernel.shape[1])


def _example(batch=3, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(2 * batch, dim, generator=g), dim=1).requires_grad_()
    labels = torch.tensor([0, 1, 0, 2, 3][:batch])
    return emb, torch.ones(2 * batch, 1), labels


def _reference_con(emb, labels, gates, anchoring, mask_mode, s=S):
    """Direct loop over docs/method.md Eq. 14 with this step's 2B embeddings as the queue (K = 2B)."""
    emb = emb.detach().double()
    batch = labels.shape[0]
    queue, queue_labels = emb, labels.repeat(2)
    k_len = queue.shape[0]
    rows = [(i, batch + i) for i in range(batch)]
    if anchoring == "two_way":
        rows += [(batch + i, i) for i in range(batch)]
    losses = []
    for a, p in rows:
        y, g = int(labels[a % batch]), gates[a % batch]
        pos = math.exp(g * s * float(emb[a] @ emb[p]))
        neg = 0.0
        for j in range(k_len):
            if int(queue_labels[j]) != y:
                neg += math.exp(g * s * float(emb[a] @ queue[j]))
            elif mask_mode == "zero_cosine":
                neg += 1.0  # exp(s * 0)
        losses.append(-math.log(pos / (pos + neg)))
    return sum(losses) / len(losses) * math.log(129) / math.log(k_len + 1)


@pytest.mark.parametrize("anchoring", ANCHORINGS)
@pytest.mark.parametrize("mask_mode", MASK_MODES)
def test_contrastive_matches_direct_formula(anchoring, mask_mode):
    emb, norms, labels = _example()
    # pair qualities (min of L, H): 0.1 (open), 0.15 (open), 0.6 (closed)
    head = StubAdaFaceHead([0.1, 0.5, 0.6, 0.9, 0.15, 0.7])
    obj = QGFaceObjective(threshold=0.2, queue="proxy", queue_size=16, anchoring=anchoring,
                          contrastive={"mask_mode": mask_mode})
    loss, logs = obj(head, emb, norms, labels, num_views=2)
    expected = _reference_con(emb, labels, [1.0, 1.0, 0.0], anchoring, mask_mode)
    assert logs["loss_con"].item() == pytest.approx(expected, rel=1e-4)
    assert loss.item() == pytest.approx(logs["loss_cls"].item() + expected, rel=1e-4)
    assert logs["qg/pairs_selected"].item() == pytest.approx(2 / 3)


def test_stop_gradient_on_hq_view_only_for_one_way():
    emb, norms, labels = _example()
    head = StubAdaFaceHead([0.1] * 6)  # every pair selected; head logits carry no gradient
    QGFaceObjective(anchoring="one_way", queue="batch")(head, emb, norms, labels, 2)[0].backward()
    assert emb.grad[:3].abs().sum() > 0 and emb.grad[3:].abs().sum() == 0
    emb.grad = None
    obj = QGFaceObjective(anchoring="two_way", detach_positive=False, queue="batch")
    obj(head, emb, norms, labels, 2)[0].backward()
    assert emb.grad[3:].abs().sum() > 0


def test_closed_rows_are_constants_in_the_mean():
    emb, norms, labels = _example()
    head = StubAdaFaceHead([0.9] * 6)  # every pair above b: all contrastive rows closed
    obj = QGFaceObjective(threshold=0.2, queue="batch", contrastive={"mask_mode": "zero_cosine"})
    loss, logs = obj(head, emb, norms, labels, 2)
    # all logits 0 -> log(K + 1) per row, times the rescale log(129) / log(K + 1) = log(129)
    assert logs["loss_con"].item() == pytest.approx(math.log(129), rel=1e-5)
    loss.backward()
    assert emb.grad is None or emb.grad.abs().sum() == 0


def test_gates_below_above_threshold_and_partition_off():
    n = torch.tensor([0.1, 0.19, 0.21, 0.3])
    cls = classification_gate(n, 0.2)
    assert cls[0] < 1e-3 and cls[1] < 0.5 < cls[2] and cls[3] > 0.999
    assert cls[1] == pytest.approx(torch.sigmoid(torch.tensor(2 * S * -0.01)).item())
    assert pair_gate(n, 0.2, "sgn").tolist() == [1.0, 1.0, 0.0, 0.0]
    assert pair_gate(n, 0.2, "linear")[0].item() == pytest.approx(0.5)
    assert pair_gate(n, 0.2, "cos")[0].item() == pytest.approx(0.5)
    assert torch.all(classification_gate(n, None) == 1) and torch.all(pair_gate(n, None, "sgn") == 1)


def test_partition_off_opens_both_gates():
    emb, norms, labels = _example()
    head = StubAdaFaceHead([0.05, 0.9, 0.95, 0.9, 0.05, 0.99])
    _, on = QGFaceObjective(threshold=0.2, queue="batch")(head, emb, norms, labels, 2)
    _, off = QGFaceObjective(threshold=None, queue="batch")(head, emb, norms, labels, 2)
    assert on["qg/cls_gated_out"].item() == pytest.approx(2 / 6)
    assert on["qg/pairs_selected"].item() == pytest.approx(2 / 3)
    assert off["qg/cls_gated_out"].item() == 0 and off["qg/pairs_selected"].item() == 1
    assert off["qg/cls_gate_mean"].item() == 1 and off["qg/pair_gate_mean"].item() == 1


def test_classification_gate_scales_logit_rows():
    head = StubAdaFaceHead([0.05, 0.9])
    head.forward = lambda e, n, y: (setattr(head, "last_margin_scaler", head.quality * 2 - 1) or e * 10)
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss, _ = QGFaceObjective(threshold=0.2)(head, emb, torch.ones(2, 1), torch.tensor([0, 0]), num_views=1)
    gate = classification_gate(torch.tensor([0.05, 0.9]), 0.2)
    expected = F.cross_entropy(emb * 10 * gate.unsqueeze(1), torch.tensor([0, 0]))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() != pytest.approx(F.cross_entropy(emb * 10, torch.tensor([0, 0])).item())


def test_pairs_selected_by_min_quality():
    n_q, n_k = torch.tensor([0.1, 0.5, 0.15]), torch.tensor([0.9, 0.1, 0.18])
    assert pair_gate(pair_quality(n_q, n_k, "min"), 0.2).tolist() == [1.0, 1.0, 1.0]
    assert pair_gate(pair_quality(n_q, n_k, "mean"), 0.2).tolist() == [0.0, 0.0, 1.0]
    assert pair_gate(pair_quality(n_q, n_k, "max"), 0.2).tolist() == [0.0, 0.0, 1.0]
    emb, norms, labels = _example()
    head = StubAdaFaceHead([0.1, 0.5, 0.15, 0.9, 0.1, 0.18])
    _, logs = QGFaceObjective(queue="batch", pair_quality="min")(head, emb, norms, labels, 2)
    assert logs["qg/pairs_selected"].item() == 1.0
    _, logs = QGFaceObjective(queue="batch", pair_quality="max")(head, emb, norms, labels, 2)
    assert logs["qg/pairs_selected"].item() == pytest.approx(1 / 3)


def test_quality_from_margin_scaler_range():
    assert quality_from_margin_scaler(torch.tensor([[-1.0], [0.0], [1.0]])).tolist() == [0.0, 0.5, 1.0]


def test_single_view_and_queue_none_skip_contrastive():
    emb, norms, labels = _example()
    head = StubAdaFaceHead([0.1] * 6)
    _, logs = QGFaceObjective(queue="none")(head, emb, norms, labels, 2)
    assert "loss_con" not in logs
    _, logs = QGFaceObjective()(StubAdaFaceHead([0.1] * 3), emb[:3], norms[:3], labels, 1)
    assert "loss_con" not in logs


def test_classification_objective_and_builder():
    emb, norms, labels = _example()
    head = StubAdaFaceHead([0.5] * 6)
    head.forward = lambda e, n, y: e @ torch.ones(4, 6)
    loss, logs = build_objective("classification")(head, emb, norms, labels, 2)
    assert loss.item() == pytest.approx(F.cross_entropy(emb @ torch.ones(4, 6), labels.repeat(2)).item())
    assert isinstance(build_objective("classification"), ClassificationObjective)
    with pytest.raises(KeyError, match="known objectives"):
        build_objective("nope")
    with pytest.raises(ValueError, match="queue"):
        QGFaceObjective(queue="bogus")


def test_dynamic_and_static_margin_lower_the_positive_logit():
    emb, norms, labels = _example()
    head = StubAdaFaceHead([0.1] * 6)
    base = QGFaceObjective(queue="batch", contrastive={"margin": "none"})(head, emb, norms, labels, 2)[1]["loss_con"]
    static_obj = QGFaceObjective(queue="batch", contrastive={"margin": "static", "margin_m": 0.4})
    static = static_obj(head, emb, norms, labels, 2)[1]["loss_con"]
    dyn_obj = QGFaceObjective(queue="batch", contrastive={"margin": "dynamic", "t_alpha": 0.5})
    dyn_obj(head, emb, norms, labels, 2)
    assert static > base
    assert dyn_obj.contrastive.margin_ema.item() != 0.0


def test_with_real_adaface_head_uses_that_forwards_margin_scaler():
    from losses import build_head

    torch.manual_seed(0)
    head = build_head("adaface", embedding_size=4, num_classes=8)
    emb, _, labels = _example()
    norms = torch.tensor([[5.0], [30.0], [60.0], [8.0], [25.0], [90.0]])
    loss, logs = QGFaceObjective(threshold=0.2, queue="proxy")(head, emb, norms, labels, 2)
    n = (head.last_margin_scaler.reshape(-1) + 1) / 2
    assert logs["qg/quality_mean"].item() == pytest.approx(n.mean().item())
    assert logs["qg/cls_gated_out"].item() == pytest.approx((n <= 0.2).float().mean().item())
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(emb.grad).all()
    assert torch.isfinite(head.kernel.grad).all() and head.kernel.grad.abs().sum() > 0
