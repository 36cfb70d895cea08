"""Backbone registry: every registered backbone at batch 2 (shape, unit norm, finite, a finite gradient for every
trainable parameter, determinism)."""

import pytest
import torch

import models

# small enough to build and step on 2 shared CPU cores in well under a second; the rest are marked slow
FAST = {"tiny", "mobilefacenet", "ir_18"}
ALL = models.list_backbones()
PARAMS = [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in ALL]

# parameters (millions, 1 decimal) and state-dict key counts of AdaFace's net.py
# (docs/method.md, "IR and IR-SE, AdaFace layout")
PAPER_COUNTS = {"ir_18": (24.0, 179), "ir_34": (34.1, 323), "ir_50": (43.6, 467), "ir_101": (65.2, 917),
                "ir_152": (109.6, 1291), "ir_200": (114.1, 1691), "ir_se_50": (43.8, 515), "ir_se_101": (65.5, 1015)}


def test_registry_names_and_aliases():
    expected = {"ir_18", "ir_34", "ir_50", "ir_101", "ir_152", "ir_200", "ir_se_50", "ir_se_101", "mobilefacenet",
                "tiny", "iresnet_r50", "iresnet_r100"}
    assert expected <= set(ALL)
    assert models.canonical_name("ir_100") == "ir_101"
    with torch.device("meta"):
        assert models.build_backbone("ir_100").meta["name"] == "ir_101"


def test_unknown_name_lists_known_ones():
    with pytest.raises(KeyError, match="ir_50.*tiny|tiny.*ir_50"):
        models.build_backbone("resnet_9000")


@pytest.mark.parametrize("name", ALL)
def test_metadata(name):
    with torch.device("meta"):  # meta tensors: no memory, no init cost
        meta = models.build_backbone(name).meta
    assert meta["color"] == ("RGB" if name.startswith("iresnet") else "BGR")
    assert (meta["input_size"], meta["mean"], meta["std"], meta["embedding_size"]) == (112, 0.5, 0.5, 512)
    assert meta["name"] == name


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_parameter_and_key_counts_match_adaface(name):
    with torch.device("meta"):
        model = models.build_backbone(name)
    params_m, n_keys = PAPER_COUNTS[name]
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == params_m
    assert len(model.state_dict()) == n_keys


def test_adaface_key_names():
    with torch.device("meta"):
        sd = models.build_backbone("ir_se_50").state_dict()
    for key in ["input_layer.0.weight", "input_layer.2.weight", "body.0.res_layer.1.weight",
                "body.3.shortcut_layer.0.weight", "body.0.res_layer.se_block.fc1.weight", "output_layer.3.weight",
                "output_layer.4.running_mean", "body.23.res_layer.5.running_var"]:
        assert key in sd, key
    assert "body.0.shortcut_layer.0.weight" not in sd  # 64->64 stride-2 unit: parameter-free max-pool shortcut
    assert "body.24.res_layer.0.weight" not in sd  # ir_50 has 3+4+14+3 = 24 units


def test_iresnet_key_names():
    with torch.device("meta"):
        sd = models.build_backbone("iresnet_r50").state_dict()
    for key in ["conv1.weight", "prelu.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.running_mean",
                "fc.weight", "features.weight", "features.running_var"]:
        assert key in sd, key


@pytest.mark.parametrize("name", PARAMS)
def test_forward_backward_and_determinism(name):
    torch.manual_seed(0)
    model = models.build_backbone(name)
    x = torch.randn(2, 3, 112, 112, requires_grad=True)
    emb, norm = model(x)
    assert emb.shape == (2, 512) and norm.shape == (2, 1)
    assert torch.isfinite(emb).all() and torch.isfinite(norm).all() and (norm > 0).all()
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2), atol=1e-5, rtol=0)

    (emb[:, :8].sum() + norm.sum()).backward()
    # every trainable parameter gets a finite gradient, as timm checks; the one frozen by design (iresnet's
    # `features.weight`, a pure normaliser) gets none
    frozen = {key: p for key, p in model.named_parameters() if not p.requires_grad}
    assert sorted(frozen) in ([], ["features.weight"]) and all(p.grad is None for p in frozen.values())
    trainable = {key: p for key, p in model.named_parameters() if p.requires_grad}
    assert [key for key, p in trainable.items() if p.grad is None] == []
    assert [key for key, p in trainable.items() if not torch.isfinite(p.grad).all()] == []
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        e1, n1 = model(x)
        e2, n2 = model(x)
    assert torch.equal(e1, e2) and torch.equal(n1, n2)


def test_preprocess_normalises_and_swaps_for_rgb_models():
    x = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    x[:, 0] = 255  # blue channel in BGR
    bgr = models.preprocess(x, {"color": "BGR", "mean": 0.5, "std": 0.5})
    rgb = models.preprocess(x, {"color": "RGB", "mean": 0.5, "std": 0.5})
    assert bgr.dtype == torch.float32
    assert bgr[0, 0].eq(1).all() and bgr[0, 2].eq(-1).all()
    assert rgb[0, 2].eq(1).all() and rgb[0, 0].eq(-1).all()
