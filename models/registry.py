"""Backbone registry: stable names -> factory functions (the project's one idiom, `common.registry`)."""

from collections.abc import Callable

import torch
from torch import nn

from common.registry import Registry

BACKBONES = Registry("backbone")


def register(name: str, aliases: tuple[str, ...] = ()) -> Callable:
    """Decorator registering a backbone factory under `name` (and optional aliases)."""
    return BACKBONES.register(name, aliases)


def canonical_name(name: str) -> str:
    """Resolve an alias (ir_100 -> ir_101); unknown names raise a KeyError listing the known ones."""
    return BACKBONES.canonical(name)


def list_backbones(include_aliases: bool = False) -> list[str]:
    """Registered backbone names (sorted); aliases only on request so tests do not build a model twice."""
    return BACKBONES.names(include_aliases)


def build_backbone(name: str, **kwargs) -> nn.Module:
    """Build a registered backbone; the returned module carries `meta` (colour order, input size, normalisation)."""
    name = canonical_name(name)
    model = BACKBONES.build(name, **kwargs)
    model.meta = {**getattr(model, "meta", {}), "name": name}
    return model


def backbone_arguments(node) -> dict:
    """The arguments of a `backbone` config node `{name: ir_50, <argument>: value, ...}`: every key but `name`."""
    return {k: v for k, v in dict(node).items() if k != "name"}


def build_backbone_from_node(node) -> nn.Module:
    """From the `backbone` config node (the registry idiom: `name` + flat arguments)."""
    return build_backbone(node["name"], **backbone_arguments(node))


def preprocess(x: torch.Tensor, meta: dict | nn.Module, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 BGR batch [B,3,H,W] -> normalised float batch in the colour order the backbone expects."""
    if isinstance(meta, nn.Module):
        meta = meta.meta
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"preprocess expects a [B,3,H,W] batch, got shape {tuple(x.shape)}")
    if meta.get("color", "BGR") == "RGB":
        x = x.flip(1)  # data pipeline is BGR everywhere; RGB models (InsightFace iresnet) get channels reversed
    mean, std = meta.get("mean", 0.5), meta.get("std", 0.5)
    return (x.to(dtype) / 255.0 - mean) / std
