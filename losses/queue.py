"""Negative queues for QGFace's contrastive loss, key gathering across ranks, and a MoCo-style momentum encoder.

`EmbeddingQueue` is a FIFO of detached embeddings with their labels and a snapshot of their class centre (the head's
kernel column `W[:, y]`) taken at enqueue time. With drift correction ("proxy-updated" queue) each entry is moved by
its class centre's drift before use and is NOT re-normalised afterwards:
    e' = e + (||e|| / ||w_then||) * (w_now - w_then)

Checkpointing / DDP (a deliberate choice): the queue lives in `get_extra_state` / `set_extra_state`, not in registered
buffers. So it is saved in every `state_dict` (a dict of tensors and ints: loads under `weights_only=True`), restored
with any size, allocated lazily at the first enqueue (default size = number of classes, read from the head), and never
broadcast by DDP (DDP only broadcasts parameters and buffers). Every rank enqueues the same all-gathered keys in the
same order, and the kernel is replicated, so the queues stay identical on all ranks without any communication beyond
the per-step all_gather of 2B keys. Extra state is not moved by `module.to()`; the queue follows the device of the
embeddings it receives.
"""

import copy

import torch
import torch.distributed as dist
from torch import nn


def gather_from_all_ranks(x: torch.Tensor) -> torch.Tensor:
    """Concatenate a (detached) tensor from every rank in rank order; identity without an initialised process group.

    Every rank must pass the same shape (training uses drop_last). Under NCCL the tensor must live on the GPU.
    """
    x = x.detach().contiguous()
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts, dim=0)


class EmbeddingQueue(nn.Module):
    """FIFO of (embedding, label, class-centre snapshot) with wrap-around; `size=None` -> number of classes."""

    def __init__(self, size: int | None = None, drift_correction: bool = True) -> None:
        super().__init__()
        if size is not None and size <= 0:
            raise ValueError(f"queue size must be positive or None (= number of classes), got {size}")
        self.size = size
        self.drift_correction = drift_correction
        self.embeddings: torch.Tensor | None = None  # [Q, D] float32
        self.labels: torch.Tensor | None = None  # [Q] int64, -1 = empty slot
        self.centres: torch.Tensor | None = None  # [Q, D] float32, W[:, y] at enqueue time
        self.ptr = 0  # next slot to write
        self.count = 0  # filled slots (<= Q)

    @property
    def allocated(self) -> bool:
        return self.embeddings is not None

    def allocate(self, size: int, dim: int, device: torch.device) -> None:
        self.embeddings = torch.zeros(size, dim, device=device)
        self.labels = torch.full((size,), -1, dtype=torch.long, device=device)
        self.centres = torch.zeros(size, dim, device=device)
        self.ptr, self.count = 0, 0

    def _follow(self, device: torch.device) -> None:
        # extra state is not moved by module.to(): follow the device of the incoming tensors
        if self.embeddings.device != device:
            self.embeddings, self.labels, self.centres = (
                t.to(device) for t in (self.embeddings, self.labels, self.centres)
            )

    @torch.no_grad()
    def enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor, centres: torch.Tensor | None = None,
                default_size: int | None = None) -> None:
        """Write rows in order at the pointer, wrapping around; only the newest Q rows survive a batch larger than Q."""
        embeddings = embeddings.detach().float()
        if centres is None:
            centres = torch.zeros_like(embeddings)
        if not self.allocated:
            size = self.size or default_size
            if not size:
                raise ValueError("EmbeddingQueue: no size given and no default (number of classes) provided")
            self.allocate(size, embeddings.shape[1], embeddings.device)
        self._follow(embeddings.device)
        capacity = self.embeddings.shape[0]
        n = embeddings.shape[0]
        if n > capacity:
            embeddings, labels, centres = embeddings[-capacity:], labels[-capacity:], centres[-capacity:]
            self.ptr = (self.ptr + n - capacity) % capacity
            n = capacity
        slots = (self.ptr + torch.arange(n, device=embeddings.device)) % capacity
        self.embeddings[slots] = embeddings
        self.labels[slots] = labels.to(self.labels.device, torch.long)
        self.centres[slots] = centres.detach().float()
        self.ptr = int((self.ptr + n) % capacity)
        self.count = min(self.count + n, capacity)

    @torch.no_grad()
    def entries(self, kernel: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Filled entries (slot order) and labels; drift-corrected against `kernel` [D, C] when enabled."""
        if not self.allocated or self.count == 0:
            raise RuntimeError("EmbeddingQueue.entries(): the queue is empty; enqueue before computing the loss")
        valid = self.labels >= 0
        emb, labels = self.embeddings[valid], self.labels[valid]
        if self.drift_correction and kernel is not None:
            w_then = self.centres[valid]
            w_now = kernel.detach().float().t()[labels]
            emb = drift_correct(emb, w_then, w_now)
        return emb, labels

    def get_extra_state(self) -> dict:
        if not self.allocated:
            return {}
        return {"embeddings": self.embeddings, "labels": self.labels, "centres": self.centres,
                "ptr": self.ptr, "count": self.count}

    def set_extra_state(self, state: dict) -> None:
        if not state:
            self.embeddings = self.labels = self.centres = None
            self.ptr, self.count = 0, 0
            return
        self.embeddings, self.labels, self.centres = state["embeddings"], state["labels"], state["centres"]
        self.ptr, self.count = int(state["ptr"]), int(state["count"])

    def extra_repr(self) -> str:
        return f"size={self.size}, drift_correction={self.drift_correction}"


def drift_correct(e: torch.Tensor, w_then: torch.Tensor, w_now: torch.Tensor) -> torch.Tensor:
    """e' = e + (||e|| / ||w_then||) * (w_now - w_then), row-wise, without re-normalising e'."""
    ratio = e.norm(dim=1, keepdim=True) / w_then.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return e + ratio * (w_now - w_then)


class MomentumEncoder(nn.Module):
    """A frozen EMA copy of the backbone for the MoCo-style queue ablation (held by the LightningModule).

    `update(online)` moves its parameters towards the online backbone (`p = m*p + (1-m)*p_online`) and copies the
    buffers (BatchNorm statistics); call it once per training step before `forward`. `forward(x)` returns the
    backbone's `(unit_embedding, norm)` without gradient. It stays in the module's train/eval mode (no shuffled BN).
    Its parameters have requires_grad=False, so the optimiser never steps them and DDP never reduces them; every rank
    applies the same update to the same online weights, so the copies stay identical.
    """

    def __init__(self, backbone: nn.Module, momentum: float = 0.999) -> None:
        super().__init__()
        self.momentum = momentum
        self.encoder = copy.deepcopy(backbone)
        self.encoder.requires_grad_(False)

    @torch.no_grad()
    def update(self, online: nn.Module) -> None:
        for p_key, p_online in zip(self.encoder.parameters(), online.parameters(), strict=True):
            p_key.mul_(self.momentum).add_(p_online.detach(), alpha=1.0 - self.momentum)
        for b_key, b_online in zip(self.encoder.buffers(), online.buffers(), strict=True):
            b_key.copy_(b_online)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x)
