"""models.load_pretrained: released-AdaFace, Lightning, plain and safetensors files; readable errors; safe loading."""

import pytest
import torch
from safetensors.torch import save_file

import models
from models.pretrained import CheckpointError, read_state_dict


def _randomised(model):
    """A state dict with AdaFace's key names and values that differ from a fresh model's."""
    g = torch.Generator().manual_seed(0)
    return {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone())
            for k, v in model.state_dict().items()}


def _same(model, state):
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items())


def test_adaface_stripped_ckpt_loads_strictly(tmp_path):
    source = models.build_backbone("tiny")
    state = _randomised(source)
    ckpt = {"state_dict": {**{f"model.{k}": v for k, v in state.items()},
                           "head.kernel": torch.randn(512, 7), "head.t": torch.zeros(1),
                           "head.batch_mean": torch.ones(1) * 20, "head.batch_std": torch.ones(1) * 100}}
    path = tmp_path / "adaface_tiny.ckpt"
    torch.save(ckpt, path)
    target = models.build_backbone("tiny")
    info = models.load_pretrained(target, path)
    assert info["prefix"] == "model." and info["loaded"] == len(state) and info["skipped"] == []
    assert _same(target, state)


def test_lightning_plain_and_safetensors_files(tmp_path):
    state = _randomised(models.build_backbone("tiny"))
    lightning = {"epoch": 3, "global_step": 10, "state_dict": {**{f"model.{k}": v for k, v in state.items()},
                                                              "head.kernel": torch.randn(512, 5)},
                 "optimizer_states": [], "hyper_parameters": {"backbone": "tiny", "lr": 0.1}}
    torch.save(lightning, tmp_path / "last.ckpt")
    torch.save(state, tmp_path / "plain.pth")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "ddp.pt")  # DataParallel prefix
    save_file({f"net.{k}": v.contiguous() for k, v in state.items()}, str(tmp_path / "model.safetensors"))
    for name, prefix in [("last.ckpt", "model."), ("plain.pth", ""), ("ddp.pt", "module."),
                         ("model.safetensors", "net.")]:
        target = models.build_backbone("tiny")
        assert models.load_pretrained(target, tmp_path / name)["prefix"] == prefix, name
        assert _same(target, state), name


def test_other_architecture_gives_readable_error(tmp_path):
    with torch.device("meta"):
        ir18 = models.build_backbone("ir_18")
    # shapes only matter for the error, so a file of empty-ish tensors would do; real small tensors keep it honest
    state = {f"model.{k}": torch.zeros(v.shape, dtype=v.dtype) for k, v in ir18.state_dict().items()}
    path = tmp_path / "ir18.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        models.load_pretrained(models.build_backbone("tiny"), path)
    msg = str(err.value)
    assert str(path) in msg and "'tiny'" in msg
    assert "missing" in msg and "unexpected" in msg and "shape mismatch" in msg
    assert "input_layer.0.weight (64, 3, 3, 3) vs (16, 3, 3, 3)" in msg
    assert "looks like backbone 'ir_18' (exactly)" in msg


def test_non_strict_reports_skipped(tmp_path):
    state = _randomised(models.build_backbone("tiny", embedding_size=128))
    torch.save(state, tmp_path / "e128.pth")
    target = models.build_backbone("tiny")
    info = models.load_pretrained(target, tmp_path / "e128.pth", strict=False)
    assert "output_layer.3.weight" in info["skipped"]
    torch.testing.assert_close(target.state_dict()["input_layer.0.weight"], state["input_layer.0.weight"])


class _Payload:
    """Unpickling this would create a file: the canary for code execution."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_checkpoint_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.x": torch.zeros(1)}, "payload": _Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused"):
        models.load_pretrained(models.build_backbone("tiny"), path)
    with pytest.raises(CheckpointError, match="refused"):
        read_state_dict(path)
    assert not marker.exists()


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "nope.ckpt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        read_state_dict(tmp_path / "junk.pt")
