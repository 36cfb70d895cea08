"""Distribution on CPU (gloo): DDP with 2 local processes under Hydra, and 2 `NODE_RANK` processes over loopback.

Each run is `debug=smoke` (smoke preset, tiny net, every validation set), so validation's gather / de-duplication
across ranks is exercised too: the metrics must come out for the whole set, not a shard.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
SMOKE_BATCH = 32  # debug=smoke's per-process batch


def smoke_images() -> int:
    """Training images of the smoke preset, from its build (the runs below build or reuse it)."""
    from dataset.synthetic import build

    cache = Path(os.environ.get("FACE_CACHE_DIR", REPO / ".cache" / "synthetic"))
    return json.loads((build(cache, "smoke", 0) / "train" / "dataset.json").read_text())["num_images"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(**extra) -> dict:
    out = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK")}
    out.update(extra)
    return out


def check_run(run: Path, world_size: int) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    steps_per_epoch = smoke_images() // (SMOKE_BATCH * world_size)  # DistributedSampler shards, drop_last
    assert metrics["train/global_step"] == 2 * steps_per_epoch
    for key in ("val/hq_avg", "tinyface/rank_1", "scface/d1", "ijbb/tar_far_1e-4"):
        assert np.isfinite(metrics[key]), key
    return metrics


def test_ddp_two_cpu_processes(tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "main.py", "debug=smoke", "trainer=ddp_cpu", f"hydra.run.dir={run}"]
    out = subprocess.run(cmd, cwd=REPO, env=env(MASTER_PORT=str(free_port())), capture_output=True, text=True,
                         timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    check_run(run, world_size=2)
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_two_nodes_over_loopback(tmp_path):
    run = tmp_path / "nodes"
    cmd = [sys.executable, "main.py", "debug=smoke", "trainer.num_nodes=2", "trainer.devices=1",
           "trainer.strategy=ddp", "trainer.accelerator=cpu", f"hydra.run.dir={run}"]
    port = str(free_port())
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, NODE_RANK=str(rank)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in (0, 1)]
    try:
        results = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
    check_run(run, world_size=2)


def test_ddp_evaluation_matches_single_process(tmp_path):
    """task=evaluate with 2 gloo processes: per-sample embeddings within 1e-5 of 1 process, identical metrics."""
    import torch

    from models import build_backbone

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    torch.save(build_backbone("tiny").state_dict(), ckpt)
    caches, metrics = {}, {}
    for label, extra in (("one", []), ("two", ["trainer=ddp_cpu"])):
        run = tmp_path / label
        cmd = [sys.executable, "main.py", "task=evaluate", "debug=smoke", f"checkpoint={ckpt}", f"hydra.run.dir={run}",
               f"evaluate.embeddings_cache={run}/emb.npz", *extra]
        out = subprocess.run(cmd, cwd=REPO, env=env(MASTER_PORT=str(free_port())), capture_output=True, text=True,
                             timeout=400)
        assert out.returncode == 0, out.stderr[-3000:]
        caches[label] = dict(np.load(run / "emb.npz"))
        metrics[label] = json.loads((run / "metrics.json").read_text())
    assert caches["one"].keys() == caches["two"].keys()
    for key, value in caches["one"].items():
        if key.endswith("/index"):
            assert np.array_equal(value, np.arange(len(value)))  # every sample exactly once, in order
        assert np.allclose(value, caches["two"][key], atol=1e-5), key
    assert metrics["one"] == metrics["two"]
