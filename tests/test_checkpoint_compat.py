"""Checkpoints written by earlier versions of the training module still evaluate and resume.

The earlier `FaceRecognitionModule(cfg, num_classes)` took the whole resolved config as one plain dict, so its
checkpoints hold `hyper_parameters = {"cfg": <config>, "num_classes": N}` with `backbone` / `head` as
`{name, kwargs}`, and none of the entries added since (`last_val_metrics`, the datamodule's position). Its state
dict has the same `model.*` / `head.*` keys as today's module: the layout below is today's checkpoint with the
earlier module's entries.
"""

import math
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("FACE_CACHE_DIR", str(REPO / ".cache" / "synthetic"))


def earlier_layout(checkpoint: dict, cfg) -> dict:
    """`checkpoint` (today's module, same weights) as the earlier module wrote it."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    head = dict(plain["head"])
    plain["backbone"] = {"name": plain["backbone"]["name"], "kwargs": {}}
    plain["head"] = {"name": head.pop("name"), "kwargs": head}
    num_classes = checkpoint["hyper_parameters"]["num_classes"]
    dropped = {"hyper_parameters", "last_val_metrics", "FaceDataModule"}
    return {**{k: v for k, v in checkpoint.items() if k not in dropped},
            "hparams_name": "kwargs", "hyper_parameters": {"cfg": plain, "num_classes": num_classes}}


@pytest.fixture
def checkpoints(tiny_cfg, tmp_path):
    """(today's last.ckpt after one epoch on the tiny .rec, the same checkpoint in the earlier layout)."""
    from tasks import train

    cfg = tiny_cfg("run", "trainer.max_epochs=1", logger="none")
    train.run(cfg)
    current = Path(cfg.paths.ckpt_dir) / "last.ckpt"
    earlier = tmp_path / "earlier.ckpt"
    checkpoint = torch.load(current, map_location="cpu", weights_only=True)
    torch.save(earlier_layout(checkpoint, cfg), earlier)
    return current, earlier


def test_earlier_layout_is_what_the_earlier_module_saved(checkpoints):
    current, earlier = checkpoints
    old = torch.load(earlier, map_location="cpu", weights_only=True)  # plain containers: weights-only loadable
    assert set(old["hyper_parameters"]) == {"cfg", "num_classes"} and old["hyper_parameters"]["num_classes"] == 6
    assert old["hyper_parameters"]["cfg"]["head"]["kwargs"]["m"] == 0.4
    assert "last_val_metrics" not in old and "FaceDataModule" not in old
    new = torch.load(current, map_location="cpu", weights_only=True)
    assert old["state_dict"].keys() == new["state_dict"].keys()


def test_earlier_checkpoint_evaluates_like_todays(checkpoints, tmp_path):
    from tasks import evaluate
    from tasks.config import compose_config

    results = {}
    for name, path in zip(("current", "earlier"), checkpoints):
        cfg = compose_config(["task=evaluate", "debug=smoke", f"checkpoint={path}", "validation.sets=[lfw]"],
                             output_dir=str(tmp_path / name))
        results[name] = evaluate.run(cfg)
    assert results["earlier"] and all(math.isfinite(v) for v in results["earlier"].values())
    assert results["earlier"] == results["current"]


def test_earlier_checkpoint_resumes_training(checkpoints, tiny_cfg):
    from tasks import train

    _, earlier = checkpoints
    metrics = train.run(tiny_cfg("resumed", "trainer.max_epochs=2", f"ckpt_path={earlier}", logger="none"))
    assert metrics["train/epochs"] == 2 and metrics["train/global_step"] == 6  # epoch 1 on top of epoch 0's 3 steps
    assert math.isfinite(metrics["train/loss"])
