"""Backbone registry: stable names -> factory functions (timm-style `register` + `build`)."""

from collections.abc import Callable

import torch
from torch import nn

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, aliases: tuple[str, ...] = ()) -> Callable:
    """Decorator registering a backbone factory under `name` (and optional aliases)."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _FACTORIES or name in _ALIASES:
            raise ValueError(f"backbone name {name!r} is registered twice")
        _FACTORIES[name] = factory
        for alias in aliases:
            _ALIASES[alias] = name
        return factory

    return wrap


def canonical_name(name: str) -> str:
    """Resolve an alias (ir_100 -> ir_101); unknown names raise a KeyError listing the known ones."""
    name = _ALIASES.get(name, name)
    if name not in _FACTORIES:
        known = ", ".join(list_backbones(include_aliases=True))
        raise KeyError(f"unknown backbone {name!r}; known backbones: {known}")
    return name


def list_backbones(include_aliases: bool = False) -> list[str]:
    """Registered backbone names (sorted); aliases only on request so tests do not build a model twice."""
    names = set(_FACTORIES)
    if include_aliases:
        names |= set(_ALIASES)
    return sorted(names)


def build_backbone(name: str, **kwargs) -> nn.Module:
    """Build a registered backbone; the returned module carries `meta` (colour order, input size, normalisation)."""
    name = canonical_name(name)
    model = _FACTORIES[name](**kwargs)
    model.meta = {**getattr(model, "meta", {}), "name": name}
    return model


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
