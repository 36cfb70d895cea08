"""Validation under DDP: every rank's embeddings of one set gathered, de-duplicated and ordered by dataset index.

Each rank embeds its shard with and without flip; the `(index, emb, norm, emb_flip, norm_flip)` rows are packed
into one tensor and all-gathered once per set (padded to the same row count first: all_gather needs equal shapes),
the padding sampler's duplicates are dropped by index, and every rank ends with the same arrays, so every rank
computes the same metrics (docs/evaluation.md, "Validation during training"). Torch is needed here, unlike the
metric modules.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def all_gather_padded(local: list[torch.Tensor], all_gather: Callable, device) -> list[torch.Tensor]:
    """all_gather tensors whose row count may differ per rank: pad to the max with index -1, gather, flatten.

    `all_gather` is the LightningModule's (`[world, ...]` out); under NCCL tensors must be on the GPU (`device`)."""
    n = torch.tensor([local[0].shape[0]], device=device)
    n_max = int(all_gather(n).max())
    out = []
    for i, t in enumerate(local):
        pad = torch.full((n_max - t.shape[0], *t.shape[1:]), -1 if i == 0 else 0, dtype=t.dtype)
        gathered = all_gather(torch.cat([t, pad]).to(device))  # [world, n_max, ...]
        out.append(gathered.reshape(-1, *t.shape[1:]).cpu())
    return out


def gather_set(parts: list[tuple[torch.Tensor, ...]], dim: int, expected: int, name: str, world_size: int = 1,
               all_gather: Callable | None = None, device=None) -> tuple[np.ndarray, ...]:
    """One set's (index, emb, norm, emb_flip, norm_flip) from every rank: numpy, sorted by index, duplicates
    dropped; raises when not every one of the `expected` samples was embedded (metrics would be wrong)."""
    if parts:
        index = torch.cat([p[0] for p in parts])
        packed = torch.cat([torch.cat(p[1:], dim=1) for p in parts])  # [N, D + 1 + D + 1]: one gather, not four
    else:  # a rank without samples still takes part in the collectives
        index, packed = torch.zeros(0, dtype=torch.long), torch.zeros(0, 2 * dim + 2)
    if world_size > 1:
        index, packed = all_gather_padded([index, packed], all_gather, device)
    index = index.numpy()
    keep = index >= 0
    index, packed = index[keep], packed.numpy()[keep]
    index, first = np.unique(index, return_index=True)  # sorted; the padding sampler's duplicates dropped
    packed = packed[first]
    if len(index) != expected or (expected and index[-1] != expected - 1):
        raise RuntimeError(f"validation set {name!r}: embedded {len(index)} of {expected} samples "
                           "(limit_val_batches < 1.0?); its metrics would be wrong")
    packed = np.ascontiguousarray(packed)
    emb, norm = packed[:, :dim], packed[:, dim:dim + 1]
    emb_flip, norm_flip = packed[:, dim + 1:2 * dim + 1], packed[:, 2 * dim + 1:]
    return index, emb, norm, emb_flip, norm_flip
