"""Proxy-updated queue: FIFO order, wrap-around, drift correction, DDP gathering and checkpoint round trip."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from losses.objective import QGFaceObjective
from losses.queue import EmbeddingQueue, MomentumEncoder, drift_correct, gather_from_all_ranks


def _rows(values, dim=3):
    return torch.tensor(values, dtype=torch.float32).unsqueeze(1).repeat(1, dim)


def test_fifo_order_and_wrap_around():
    q = EmbeddingQueue(size=5, drift_correction=False)
    q.enqueue(_rows([0, 1, 2]), torch.tensor([0, 1, 2]))
    assert q.labels.tolist() == [0, 1, 2, -1, -1] and q.ptr == 3 and q.count == 3
    emb, labels = q.entries()
    assert labels.tolist() == [0, 1, 2] and emb[:, 0].tolist() == [0, 1, 2]
    q.enqueue(_rows([3, 4, 5]), torch.tensor([3, 4, 5]))  # wraps: slot 0 (oldest) is overwritten by 5
    assert q.labels.tolist() == [5, 1, 2, 3, 4] and q.ptr == 1 and q.count == 5
    assert q.embeddings[:, 0].tolist() == [5, 1, 2, 3, 4]
    q.enqueue(_rows([6, 7, 8, 9, 10, 11, 12]), torch.arange(6, 13))  # larger than the queue: newest 5 survive
    assert sorted(q.labels.tolist()) == [8, 9, 10, 11, 12]
    assert q.labels[(q.ptr - 1) % 5].item() == 12  # the newest sits just before the pointer


def test_default_size_is_number_of_classes():
    q = EmbeddingQueue()
    q.enqueue(_rows([1, 2]), torch.tensor([0, 1]), default_size=7)
    assert q.embeddings.shape == (7, 3)


def test_drift_correction_formula_not_renormalised():
    e = F.normalize(torch.tensor([[1.0, 2.0, 2.0]]), dim=1)
    w_then, w_now = torch.tensor([[0.0, 3.0, 4.0]]), torch.tensor([[1.0, 3.0, 5.0]])
    out = drift_correct(e, w_then, w_now)
    expected = e + (1.0 / 5.0) * torch.tensor([[1.0, 0.0, 1.0]])
    assert torch.allclose(out, expected)
    assert out.norm().item() != pytest.approx(1.0)

    # through the queue: centres are snapshotted at enqueue time and compared with the kernel at use time
    kernel = torch.tensor([[0.0, 1.0], [3.0, 0.0], [4.0, 0.0]])  # [D, C]; class 0 column = w_then
    q = EmbeddingQueue(size=4, drift_correction=True)
    q.enqueue(e, torch.tensor([0]), centres=kernel.t()[torch.tensor([0])])
    kernel_now = kernel.clone()
    kernel_now[:, 0] = w_now[0]
    emb, _ = q.entries(kernel_now)
    assert torch.allclose(emb, expected)
    assert torch.allclose(q.entries(kernel)[0], e)  # no drift -> unchanged


def test_state_round_trip_through_weights_only_checkpoint(tmp_path):
    obj = QGFaceObjective(queue="proxy", queue_size=6, contrastive={"margin": "dynamic"})
    obj.queue.enqueue(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]), torch.randn(4, 3))
    obj.contrastive.margin_ema.fill_(0.25)
    path = tmp_path / "state.pt"
    torch.save({"state_dict": obj.state_dict()}, path)
    restored = QGFaceObjective(queue="proxy", queue_size=6, contrastive={"margin": "dynamic"})
    restored.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    for name in ("embeddings", "labels", "centres"):
        assert torch.equal(getattr(restored.queue, name), getattr(obj.queue, name))
    assert (restored.queue.ptr, restored.queue.count) == (4, 4)
    assert restored.contrastive.margin_ema.item() == 0.25
    # the restored queue continues the FIFO exactly where the original left off
    for q in (obj.queue, restored.queue):
        q.enqueue(torch.ones(3, 3), torch.tensor([7, 8, 9]))
    assert torch.equal(restored.queue.labels, obj.queue.labels)
    # an empty (never used) queue round-trips too
    empty = QGFaceObjective(queue="proxy")
    empty.load_state_dict(QGFaceObjective(queue="proxy").state_dict())
    assert not empty.queue.allocated


class _Head(nn.Module):
    def __init__(self, rows: int):
        super().__init__()
        self.kernel = nn.Parameter(torch.randn(4, 5, generator=torch.Generator().manual_seed(3)))
        self.rows = rows

    def forward(self, e, n, y):
        self.last_margin_scaler = torch.full((self.rows, 1), -0.9)  # n = 0.05: every pair selected
        return e @ self.kernel


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        batch = 2
        emb = F.normalize(torch.randn(2 * batch, 4, generator=torch.Generator().manual_seed(10 + rank)), dim=1)
        labels = torch.tensor([rank * 2, rank * 2 + 1])
        obj = QGFaceObjective(queue="proxy", queue_size=16)
        loss, logs = obj(_Head(2 * batch), emb, torch.ones(2 * batch, 1), labels, num_views=2)
        torch.save({"emb": emb, "labels": obj.queue.labels, "queue": obj.queue.embeddings,
                    "gathered": gather_from_all_ranks(labels), "negatives": logs["qg/num_negatives"]},
                   f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_queue_gathered_across_two_ddp_processes(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # rank order; each rank contributes its L rows then its H rows (labels repeated per view)
    assert r0["gathered"].tolist() == [0, 1, 2, 3]
    expected_labels = [0, 1, 0, 1, 2, 3, 2, 3] + [-1] * 8
    assert r0["labels"].tolist() == expected_labels and r1["labels"].tolist() == expected_labels
    expected_queue = torch.cat([r0["emb"], r1["emb"]])
    assert torch.allclose(r0["queue"][:8], expected_queue) and torch.equal(r0["queue"], r1["queue"])
    assert r0["negatives"].item() == 8


def test_gather_without_process_group_is_identity():
    x = torch.arange(4.0)
    assert torch.equal(gather_from_all_ranks(x), x)


def test_momentum_encoder_moves_towards_online():
    online = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    key = MomentumEncoder(online, momentum=0.9)
    before = key.encoder[0].weight.clone()
    with torch.no_grad():
        online[0].weight.add_(1.0)
    online[1].running_mean.fill_(3.0)
    key.update(online)
    assert torch.allclose(key.encoder[0].weight, before + 0.1)
    assert torch.equal(key.encoder[1].running_mean, online[1].running_mean)
    assert not any(p.requires_grad for p in key.parameters())
