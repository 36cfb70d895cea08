"""Margin heads against direct re-computations of the formulas of (docs/method.md, "Margin heads")."""

import math

import pytest
import torch
import torch.nn.functional as F

from losses import HEADS, build_head

B, C, D = 6, 11, 512


def _inputs(seed=0, norm_scale=40.0):
    g = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(B, D, generator=g), dim=1)
    norms = torch.rand(B, 1, generator=g) * norm_scale + 1.0
    labels = torch.randint(0, C, (B,), generator=g)
    return emb, norms, labels


def _cos(head, emb):
    return emb.double() @ F.normalize(head.kernel.detach().double(), dim=0)


@pytest.mark.parametrize("name", HEADS.names())
def test_shape_kernel_and_gradients(name):
    torch.manual_seed(0)
    head = build_head(name, embedding_size=D, num_classes=C)
    assert tuple(head.kernel.shape) == (D, C)
    torch.testing.assert_close(head.kernel.detach().norm(dim=0), torch.ones(C))  # unit columns at init
    emb, norms, labels = _inputs()
    emb.requires_grad_(True)
    logits = head(emb, norms, labels)
    assert logits.shape == (B, C) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    F.cross_entropy(logits, labels).backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
    assert head.kernel.grad.abs().sum() > 0
    # every parameter, as for the backbones (buffers such as AdaFace's EMAs take no gradient)
    params = dict(head.named_parameters())
    assert [key for key, p in params.items() if p.grad is None or not torch.isfinite(p.grad).all()] == []


def test_unknown_head_lists_known():
    with pytest.raises(KeyError, match="adaface"):
        build_head("sphereface")


def test_adaface_matches_spec_formula():
    torch.manual_seed(1)
    head = build_head("adaface", num_classes=C)
    emb, norms, labels = _inputs(1)
    logits = head(emb, norms, labels).double()

    m, h, s, eps, t = 0.4, 0.333, 64.0, 1e-3, 0.01
    cos = _cos(head, emb).clamp(-1 + eps, 1 - eps)
    safe = norms.double().clamp(0.001, 100)
    mean = t * safe.mean() + (1 - t) * 20.0  # EMA before use, from the start values 20 / 100
    std = t * safe.std() + (1 - t) * 100.0
    scaler = (h * (safe - mean) / (std + eps)).clamp(-1, 1)
    expected = cos.clone()
    for i, y in enumerate(labels.tolist()):
        theta = math.acos(cos[i, y])
        theta_m = min(max(theta - m * scaler[i, 0].item(), eps), math.pi - eps)
        expected[i, y] = math.cos(theta_m) - (m + m * scaler[i, 0].item())
    torch.testing.assert_close(logits, s * expected, atol=2e-4, rtol=1e-5)
    torch.testing.assert_close(head.last_margin_scaler.double(), scaler, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(head.batch_mean.double(), mean.view(1), atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(head.batch_std.double(), std.view(1), atol=1e-5, rtol=1e-6)


def test_adaface_margin_scaler_range_and_ema_order():
    head = build_head("adaface", num_classes=C, t_alpha=1.0)  # t_alpha=1: statistics are purely this batch's
    assert head.batch_mean.item() == 20.0 and head.batch_std.item() == 100.0
    emb, _, labels = _inputs(2)
    norms = torch.tensor([[0.0001], [1.0], [2.0], [3.0], [50.0], [500.0]])  # extremes hit the clamps
    head(emb, norms, labels)
    safe = norms.clamp(0.001, 100)
    assert head.batch_mean.item() == pytest.approx(safe.mean().item(), rel=1e-6)  # updated before use
    scaler = head.last_margin_scaler
    assert scaler.shape == (B, 1) and not scaler.requires_grad
    assert scaler.min() >= -1 and scaler.max() <= 1
    torch.testing.assert_close(scaler, (0.333 * (safe - safe.mean()) / (safe.std() + 1e-3)).clamp(-1, 1))
    # monotone in the norm: low-norm (hard) samples get the low end of the scaler
    assert torch.all(scaler[1:] >= scaler[:-1])


def test_adaface_configurable_ema_start_and_eval_freezes_stats():
    head = build_head("adaface", num_classes=C, init_mean=0.0, init_std=0.0, t_alpha=0.5)
    emb, norms, labels = _inputs(3)
    head(emb, norms, labels)
    assert head.batch_mean.item() == pytest.approx(0.5 * norms.mean().item(), rel=1e-5)
    assert head.batch_std.item() == pytest.approx(0.5 * norms.std().item(), rel=1e-5)
    before = head.batch_mean.clone()
    head.eval()
    head(emb, norms, labels)
    assert torch.equal(head.batch_mean, before)


def test_adaface_scaler_extremes_reduce_to_arcface_and_cosface_like_margins():
    # scaler -1: angular margin +m, additive 0 (ArcFace); scaler +1: angular -m, additive 2m
    head = build_head("adaface", num_classes=C, init_mean=10.0, init_std=0.0, t_alpha=0.0, h=1e6)
    arc = build_head("arcface", num_classes=C, m=0.4)
    arc.kernel.data.copy_(head.kernel.data)
    emb, _, labels = _inputs(4)
    low = head(emb, torch.full((B, 1), 1.0), labels)
    assert head.last_margin_scaler.eq(-1).all()
    torch.testing.assert_close(low, arc(emb, None, labels), atol=1e-4, rtol=1e-5)
    high = head(emb, torch.full((B, 1), 50.0), labels)
    cos = _cos(head, emb).float().clamp(-1 + 1e-3, 1 - 1e-3)
    idx = labels.view(-1, 1)
    theta_m = (torch.acos(cos.gather(1, idx)) - 0.4).clamp(1e-3, math.pi - 1e-3)
    torch.testing.assert_close(high.gather(1, idx), 64 * (torch.cos(theta_m) - 0.8), atol=1e-4, rtol=1e-5)


def test_arcface_and_cosface_targets():
    torch.manual_seed(5)
    emb, norms, labels = _inputs(5)
    idx = labels.view(-1, 1)
    arc = build_head("arcface", num_classes=C)
    cos = _cos(arc, emb).clamp(-1 + 1e-3, 1 - 1e-3)
    out = arc(emb, norms, labels).double()
    target = 64 * torch.cos((torch.acos(cos.gather(1, idx)) + 0.5).clamp(1e-3, math.pi - 1e-3))
    torch.testing.assert_close(out.gather(1, idx), target, atol=1e-4, rtol=1e-5)
    mask = torch.ones_like(out, dtype=torch.bool).scatter(1, idx, False)
    torch.testing.assert_close(out[mask], 64 * cos[mask], atol=1e-4, rtol=1e-5)

    cf = build_head("cosface", num_classes=C)
    cos = _cos(cf, emb)
    out = cf(emb, norms, labels).double()
    torch.testing.assert_close(out, 64 * (cos - 0.4 * (~mask)), atol=1e-4, rtol=1e-5)


def test_softmax_is_linear_on_raw_feature():
    head = build_head("softmax", num_classes=C)
    emb, norms, labels = _inputs(6)
    torch.testing.assert_close(head(emb, norms, labels), (emb * norms) @ head.kernel.detach())


@pytest.mark.parametrize("name", HEADS.names())
def test_bf16_autocast_close_to_fp32(name):
    torch.manual_seed(7)
    head = build_head(name, num_classes=C)
    emb, norms, labels = _inputs(7)
    ref = head(emb, norms, labels)
    if name == "adaface":
        head.batch_mean.fill_(20.0), head.batch_std.fill_(100.0)  # replay the same EMA step
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # the backbone would hand over bf16 activations under autocast
        out = head(emb.bfloat16(), norms.bfloat16(), labels)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # bf16 inputs carry ~3 significant digits; with s=64 the logits agree to well under 1
    torch.testing.assert_close(out, ref, atol=0.5, rtol=0.02)


def test_label_shape_error():
    head = build_head("cosface", num_classes=C)
    emb, norms, labels = _inputs(8)
    with pytest.raises(ValueError, match="labels"):
        head(emb, norms, labels.view(-1, 1))


def test_adaface_single_sample_batch_keeps_std_finite():
    head = build_head("adaface", num_classes=C)
    emb, norms, labels = _inputs(9)
    logits = head(emb[:1], norms[:1], labels[:1])  # std of one value is undefined: the running std is kept
    assert torch.isfinite(logits).all() and head.batch_std.item() == pytest.approx(100.0)
