"""The three extension paths of docs/extending.md ("Add a backbone", "Add a margin head", "Add a validation
protocol"): each is one Python registration plus one YAML, and the registered part is built from its config node like
the built-in ones; every registered protocol kind keeps the protocol contract."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import models
from losses.heads import HEADS, MarginHead
from validation.protocols import PROTOCOLS, SetEmbeddings, ValidationProtocol, build_protocol


# --- the Python side of each extension (what a contributor writes in models/, losses/heads.py, validation/protocols/)
def pooled_net(width: int = 8, embedding_size: int = 16):
    """Conv -> global pool -> linear; returns (unit embedding, norm) like every backbone."""

    class PooledNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, width, 3, stride=4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                      nn.Linear(width, embedding_size))
            self.meta = {"color": "BGR", "input_size": 112, "mean": 0.5, "std": 0.5,
                         "embedding_size": embedding_size}

        def forward(self, x):
            feat = self.body(x)
            norm = feat.norm(dim=1, keepdim=True).clamp_min(1e-6)
            return feat / norm, norm

    return PooledNet()


class ScaledCosineHead(MarginHead):
    """Normalised-softmax head: s * cos, no margin."""

    def __init__(self, embedding_size: int, num_classes: int, s: float = 30.0):
        super().__init__(embedding_size, num_classes)
        self.s = s

    def forward(self, embeddings, norms, labels):
        return self.s * self.cosine(embeddings)


class CosineGapProtocol(ValidationProtocol):
    """Mean cosine of same pairs minus that of different pairs, on a `.bin` (a toy separability measure)."""

    default_path = "{name}.bin"
    expects = "an InsightFace .bin file"

    def dataset(self, swap_rb: bool = False):
        from dataset.readers import BinPairsDataset

        self._dataset = BinPairsDataset(self.path)
        return self._dataset

    def num_images(self) -> int:
        return len(self._dataset)

    def compute(self, embeddings: SetEmbeddings, fusion: str) -> dict[str, float]:
        fused = embeddings.fused(fusion)
        cos = (fused[0::2] * fused[1::2]).sum(1)
        same = np.asarray(self._dataset.issame, bool)
        return {f"{self.name}/cosine_gap": float(cos[same].mean() - cos[~same].mean()) * 100}

    def headline(self):
        return [(f"{self.name}/cosine_gap", f"{self.title} gap")]


@pytest.fixture(autouse=True)
def registered():
    """What the decorators `@models.register(...)`, `@HEADS.register(...)`, `@PROTOCOLS.register(...)` do at import
    in a real module; undone afterwards so other tests' registry listings stay the built-in ones."""
    plugins = [(models.BACKBONES, "test_pooled_net", pooled_net), (HEADS, "test_scaled_cosine", ScaledCosineHead),
               (PROTOCOLS, "test_cosine_gap", CosineGapProtocol)]
    for registry, name, factory in plugins:
        registry.register(name)(factory)
    yield
    for registry, name, _ in plugins:
        registry.unregister(name)


# --- the YAML side: one file per extension, found through Hydra's search path
@pytest.fixture
def extra_conf(tmp_path) -> Path:
    conf = tmp_path / "extra_conf"
    (conf / "backbone").mkdir(parents=True)
    (conf / "head").mkdir()
    (conf / "validation").mkdir()
    (conf / "backbone" / "pooled.yaml").write_text("name: test_pooled_net\nwidth: 4\nembedding_size: 16\n")
    (conf / "head" / "scaled_cosine.yaml").write_text("name: test_scaled_cosine\ns: 16.0\n")
    (conf / "validation" / "with_gap.yaml").write_text(
        "defaults:\n  - synthetic_hq\n  - _self_\n\n"
        "sets: [lfw, lfw_gap]\n"
        "protocols:\n  lfw_gap: {kind: test_cosine_gap, path: lfw.bin, title: LFW}\n")
    return conf


def test_backbone_and_head_from_their_yaml(compose, extra_conf):
    from tasks.train import build_module

    cfg = compose(f"hydra.searchpath=[file://{extra_conf}]", "backbone=pooled", "head=scaled_cosine")
    module = build_module(cfg, num_classes=5)
    assert module.model.meta["name"] == "test_pooled_net" and isinstance(module.head, ScaledCosineHead)
    assert module.head.s == 16.0 and module.head.kernel.shape == (16, 5)
    images = torch.randint(0, 256, (4, 3, 112, 112), dtype=torch.uint8)
    loss = module.training_step((images, torch.tensor([0, 1, 2, 3])), 0)
    loss.backward()
    assert torch.isfinite(loss)
    grads = {key: p.grad for key, p in [*module.model.named_parameters(), *module.head.named_parameters()]}
    assert [key for key, g in grads.items() if g is None or not torch.isfinite(g).all()] == []


def test_validation_protocol_from_its_yaml(compose, extra_conf, tmp_path):
    from dataset.formats import write_bin
    from validation.suite import ValidationSuite

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(40)]
    write_bin(tmp_path / "val" / "lfw.bin", images, [True, False] * 10)
    cfg = compose(f"hydra.searchpath=[file://{extra_conf}]", "validation=with_gap", f"validation.root={tmp_path}/val")
    suite = ValidationSuite.from_config(cfg.validation, cfg.validation.root)
    assert suite.names == ["lfw", "lfw_gap"] and [len(d) for d in suite.datasets()] == [40, 40]

    emb = rng.standard_normal((40, 8)).astype(np.float32)
    emb[1::4] = emb[0::4]  # same pairs identical, different pairs random
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ones = np.ones((40, 1), np.float32)
    metrics = suite.evaluate([(emb, ones, emb, ones)] * 2)
    assert metrics["val/lfw_acc"] == 100.0 and metrics["val/hq_avg"] == 100.0  # the gap set is not in the HQ avg
    assert metrics["lfw_gap/cosine_gap"] > 50.0
    assert "LFW gap" in suite.summary(metrics)


def test_unknown_names_list_the_registered_ones(compose):
    with pytest.raises(KeyError, match="test_pooled_net"):
        models.build_backbone("nope")
    with pytest.raises(KeyError, match="test_scaled_cosine"):
        HEADS.build("nope", embedding_size=4, num_classes=2)
    cfg = compose("validation.sets=[lfw,nope]")
    with pytest.raises(ValueError, match="unknown validation set"):
        from validation.suite import ValidationSuite

        ValidationSuite.from_config(cfg.validation, "/nonexistent")


# --- every registered protocol kind (built-in or plug-in) keeps the contract the suite relies on
@pytest.mark.parametrize("kind", PROTOCOLS.names())
def test_every_protocol_kind_implements_the_contract_and_names_a_missing_path(kind, tmp_path):
    factory = PROTOCOLS.get(kind)
    assert issubclass(factory, ValidationProtocol)
    base = ValidationProtocol
    inherited = [m for m in ("dataset", "num_images", "compute") if getattr(factory, m) is getattr(base, m)]
    assert inherited == []  # the base only raises NotImplementedError
    with pytest.raises(FileNotFoundError, match=f"validation set 'probe': {tmp_path / 'absent'}"):
        build_protocol("probe", {"kind": kind, "path": "absent"}, root=tmp_path)
