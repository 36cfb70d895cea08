"""Training: optimizer groups and schedule, `debug=smoke` end to end (subprocess), resume at the same step."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from training.lit_module import FaceRecognitionModule, lr_factor, split_weight_decay

REPO = Path(__file__).resolve().parents[1]


def test_lr_schedule_multistep_by_epoch_with_linear_warmup():
    kw = dict(steps_per_epoch=10, milestones=[2, 3], gamma=0.1, warmup_steps=5, warmup_start=0.0)
    assert lr_factor(0, **kw) == 0.0
    assert lr_factor(4, **kw) == pytest.approx(0.8)
    assert [lr_factor(s, **kw) for s in (5, 19)] == [1.0, 1.0]
    assert lr_factor(20, **kw) == pytest.approx(0.1) and lr_factor(30, **kw) == pytest.approx(0.01)


def test_weight_decay_groups_follow_adaface():
    """BatchNorm parameters get no weight decay; everything else, head.kernel included, does."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.PReLU(4), nn.Flatten(), nn.Linear(4, 2),
                          nn.BatchNorm1d(2))
    head = nn.Module()
    head.kernel = nn.Parameter(torch.zeros(2, 5))
    decay, no_decay = split_weight_decay({"model": model, "head": head})
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    bn = ids([*model[1].parameters(), *model[5].parameters()])
    assert ids(no_decay) == bn
    assert id(head.kernel) in ids(decay) and id(model[0].weight) in ids(decay) and id(model[2].weight) in ids(decay)
    assert len(decay) + len(no_decay) == len(list(model.parameters())) + 1


def test_module_attributes_and_plain_hparams(tiny_cfg):
    from tasks.train import build_module

    cfg = tiny_cfg("run", logger="none")
    module = build_module(cfg, num_classes=6)
    assert module.model.meta["name"] == "tiny" and module.head.kernel.shape == (512, 6)  # debug=smoke's backbone
    for node in ("backbone", "head", "objective", "optim"):  # each builder got its own node, as a plain dict
        assert type(module.hparams[node]) is dict  # plain containers only: checkpoints load with weights_only=True
    assert module.hparams["head"]["name"] == "adaface" and "data" not in module.hparams
    emb, norm = module(torch.randint(0, 256, (2, 3, 112, 112), dtype=torch.uint8))
    assert emb.shape == (2, 512) and norm.shape == (2, 1)
    assert torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)


def test_resume_continues_at_same_step_and_lr(tmp_path, tiny_cfg, monkeypatch):
    """Interrupted after one epoch, `ckpt_path=last` from the same run dir continues at the same step and LR."""
    from tasks import train as train_task

    common = ("optim.milestones=[1]", "optim.lr=0.1", "callbacks.steps.every_n_train_steps=1000")
    first = train_task.run(tiny_cfg("run", "trainer.max_epochs=1", *common, logger="none"))
    steps_per_epoch = int(first["train/global_step"])
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == steps_per_epoch

    seen = {}

    def record(self):
        seen["step"] = self.global_step
        seen["lr"] = self.trainer.optimizers[0].param_groups[0]["lr"]

    monkeypatch.setattr(FaceRecognitionModule, "on_train_start", record, raising=False)
    second = train_task.run(tiny_cfg("run", "trainer.max_epochs=2", "ckpt_path=last", *common, logger="none"))
    assert seen["step"] == steps_per_epoch  # not 0: restored, not restarted
    assert seen["lr"] == pytest.approx(0.01)  # epoch 1 is past milestone 1
    assert second["train/global_step"] == 2 * steps_per_epoch


def test_resume_without_checkpoint_says_so(tiny_cfg):
    from tasks.train import resolve_ckpt_path

    with pytest.raises(FileNotFoundError, match="nothing to resume.*run_name"):
        resolve_ckpt_path(tiny_cfg("fresh", "ckpt_path=last", logger="none"))
    assert resolve_ckpt_path(tiny_cfg("fresh", "ckpt_path=auto", logger="none")) is None


@pytest.mark.slow
def test_smoke_end_to_end(tmp_path):
    """`python main.py debug=smoke`: synthetic smoke preset, every validation set, run-dir outputs."""
    run = tmp_path / "smoke"
    out = subprocess.run([sys.executable, "main.py", "debug=smoke", f"hydra.run.dir={run}"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("val/hq_avg", "val/lfw_acc", "tinyface/rank_1", "scface/d1", "ijbb/tar_far_1e-4", "val/all_avg",
                "train/loss"):
        assert np.isfinite(metrics[key]), key
    assert 0 <= metrics["val/hq_avg"] <= 100
    assert "HQ avg" in out.stdout  # the results table
    for name in ("config_resolved.yaml", "git.json", "versions.json", "checkpoints/last.ckpt", "logs/metrics.csv"):
        assert (run / name).is_file(), name
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert any(k.startswith("model.") for k in ckpt["state_dict"]) and "head.kernel" in ckpt["state_dict"]
    assert list((run / "checkpoints").glob("best-*.ckpt"))


@pytest.mark.slow
def test_resume_from_an_end_of_epoch_checkpoint_with_loader_workers(tiny_cfg):
    """A finished one-epoch run extended to two epochs (ckpt_path=auto) with a loader worker trains the second epoch
    exactly as an uninterrupted run does (the sampler starts the next epoch, not the finished one)."""
    from tasks import train as train_task

    train_task.run(tiny_cfg("r", "run_name=r", "ckpt_path=auto", "trainer.max_epochs=1", "data.num_workers=1",
                       logger="none"))
    resumed = train_task.run(tiny_cfg("r", "run_name=r", "ckpt_path=auto", "trainer.max_epochs=2",
                                 "data.num_workers=1", logger="none"))
    whole = train_task.run(tiny_cfg("w", "run_name=w", "trainer.max_epochs=2", "data.num_workers=1", logger="none"))
    assert resumed["train/global_step"] == whole["train/global_step"] == 6
    assert resumed["train/loss"] == pytest.approx(whole["train/loss"], rel=1e-6)
