"""Fine-tuning a pretrained backbone (docs/finetune.md): stages, freezing, BatchNorm modes and weight imprinting.

- `backbone_stages(model)`: the backbone cut into stages from the input (stem, one stage per resolution, the output
  layer), so `freeze_stages=N` means the same thing for IR, IR-SE, tiny and InsightFace iresnet.
- `frozen_modules(model, stages, names)`: the modules a fine-tuning run keeps fixed (no gradient, eval-mode BN).
- `imprint_head(model, head, dataset)`: class centres = the normalised mean embedding of each identity.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from models.registry import preprocess

log = logging.getLogger(__name__)

HEAD_INIT = ("imprint", "random")
BN_MODES = ("frozen", "train")
DEFAULTS = {"head_init": "imprint", "backbone_lr_scale": 1.0, "freeze_stages": 0, "freeze_modules": [],
            "head_warmup_epochs": 0, "bn": "train", "imprint_batch_size": 128, "require_init_from": False}


def options(node: dict | None) -> dict:
    """The `finetune` config node with defaults filled in and checked (a wrong value names its key)."""
    out = {**DEFAULTS, **(node or {})}
    unknown = sorted(set(out) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"finetune: unknown keys {unknown}; known: {sorted(DEFAULTS)}")
    if out["head_init"] not in HEAD_INIT:
        raise ValueError(f"finetune.head_init={out['head_init']!r}: choose one of {HEAD_INIT}")
    if out["bn"] not in BN_MODES:
        raise ValueError(f"finetune.bn={out['bn']!r}: choose one of {BN_MODES}")
    if not out["backbone_lr_scale"] >= 0:
        raise ValueError(f"finetune.backbone_lr_scale={out['backbone_lr_scale']!r}: must be >= 0")
    for key in ("freeze_stages", "head_warmup_epochs"):
        if int(out[key]) < 0:
            raise ValueError(f"finetune.{key}={out[key]!r}: must be >= 0")
    out["freeze_modules"] = list(out["freeze_modules"] or [])
    return out


def _has_stride2(module: nn.Module) -> bool:
    for sub in module.modules():
        stride = getattr(sub, "stride", None)
        if isinstance(sub, (nn.Conv2d, nn.MaxPool2d)) and stride is not None:
            s = stride if isinstance(stride, tuple) else (stride, stride)
            if max(s) > 1:
                return True
    return False


def backbone_stages(model: nn.Module) -> list[list[nn.Module]]:
    """Stages from the input: [stem], one group per resolution (a unit that halves the map starts a group),
    [output layer]. Unknown layouts: each top-level child is a stage."""
    children = dict(model.named_children())
    if {"input_layer", "body", "output_layer"} <= set(children):  # IR / IR-SE / tiny
        groups: list[list[nn.Module]] = []
        for unit in model.body:
            if not groups or _has_stride2(unit):
                groups.append([])
            groups[-1].append(unit)
        return [[model.input_layer]] + groups + [[model.output_layer]]
    if {"conv1", "layer1"} <= set(children):  # InsightFace iresnet
        stem = [m for n, m in children.items() if n in ("conv1", "bn1", "prelu")]
        layers = [[children[n]] for n in ("layer1", "layer2", "layer3", "layer4") if n in children]
        rest = [m for n, m in children.items() if n not in ("conv1", "bn1", "prelu", "layer1", "layer2", "layer3",
                                                            "layer4")]
        return [stem] + layers + ([rest] if rest else [])
    return [[m] for m in children.values()]


def frozen_modules(model: nn.Module, stages: int, names: list[str]) -> list[nn.Module]:
    """The first `stages` stages plus the modules named in `names` (dotted names of `model.named_modules()`)."""
    all_stages = backbone_stages(model)
    if stages > len(all_stages):
        raise ValueError(f"finetune.freeze_stages={stages}: this backbone has {len(all_stages)} stages")
    modules = [m for stage in all_stages[:stages] for m in stage]
    named = dict(model.named_modules())
    unknown = [n for n in names if n not in named]
    if unknown:
        top = ", ".join(n for n in named if n and "." not in n)
        raise ValueError(f"finetune.freeze_modules: no module named {unknown} in the backbone (top-level: {top})")
    return modules + [named[n] for n in names]


@torch.no_grad()
def embed_with_labels(model: nn.Module, dataset, batch_size: int = 128, channels_last: bool = False):
    """(unit embeddings [N, D], labels [N]) of a dataset of `(uint8 BGR [3,H,W], label)` items, model in eval mode
    (restored afterwards)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    embeddings, labels = [], []
    try:
        for images, label in loader:
            x = preprocess(images.to(device), model.meta)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            embeddings.append(model(x)[0].float().cpu())
            labels.append(torch.as_tensor(label).long())
    finally:
        model.train(was_training)
    return torch.cat(embeddings), torch.cat(labels)


@torch.no_grad()
def imprint_head(model: nn.Module, head: nn.Module, dataset, batch_size: int = 128,
                 channels_last: bool = False) -> int:
    """Weight imprinting: column c of `head.kernel` [D, C] = the normalised mean of class c's unit embeddings.
    Returns the number of classes imprinted; a class without images keeps its random centre."""
    embeddings, labels = embed_with_labels(model, dataset, batch_size, channels_last)
    if not torch.isfinite(embeddings).all():
        raise FloatingPointError("weight imprinting: the pretrained backbone gave non-finite embeddings")
    dim, classes = head.kernel.shape
    if embeddings.shape[1] != dim:
        raise ValueError(f"weight imprinting: embeddings of size {embeddings.shape[1]} for a head of size {dim}")
    sums = torch.zeros(classes, dim).index_add_(0, labels, embeddings)
    counts = torch.bincount(labels, minlength=classes)
    present = counts > 0
    centres = sums[present] / sums[present].norm(dim=1, keepdim=True).clamp_min(1e-12)
    kernel = head.kernel.data
    kernel[:, present.to(kernel.device)] = centres.T.to(kernel.dtype).to(kernel.device)
    log.info("weight imprinting: %d of %d class centres from %d images", int(present.sum()), classes, len(labels))
    return int(present.sum())
