"""ONNX export of the tiny backbone, checked with onnxruntime against PyTorch."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import models
from deploy.export import export_onnx, main

pytestmark = pytest.mark.slow  # one dynamo export takes ~10 s on 2 shared cores


def test_tiny_export_matches_torch_with_dynamic_batch(tmp_path, capsys):
    torch.manual_seed(0)
    model = models.build_backbone("tiny")
    model.train()
    model(torch.randn(8, 3, 112, 112))  # move BN running stats away from their init so the check is not trivial
    path = tmp_path / "tiny.onnx"
    result = export_onnx(model, path)
    assert result["max_abs_diff"] <= 1e-4
    assert "onnxruntime check: max |embedding diff|" in capsys.readouterr().out

    proto = onnx.load(str(path))
    assert [o.name for o in proto.graph.output] == ["embedding", "norm"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["color"] == "BGR" and meta["name"] == "tiny" and meta["input_size"] == "112"

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(5, 3, 112, 112) * 2 - 1  # a batch size the export never saw
    emb, norm = session.run(["embedding", "norm"], {"input": x.numpy()})
    with torch.no_grad():
        ref_emb, ref_norm = model(x)
    assert emb.shape == (5, 512) and norm.shape == (5, 1)
    np.testing.assert_allclose(emb, ref_emb.numpy(), atol=1e-4)
    np.testing.assert_allclose(norm, ref_norm.numpy(), rtol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_cli_exports_from_checkpoint(tmp_path, capsys):
    source = models.build_backbone("tiny")
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "t.ckpt")
    main(["--backbone", "tiny", "--checkpoint", str(tmp_path / "t.ckpt"), "--out", str(tmp_path / "t.onnx")])
    out = capsys.readouterr().out
    assert "OK" in out and (tmp_path / "t.onnx").is_file()


def test_random_weight_export_is_the_same_file_every_run(tmp_path):
    torch.manual_seed(123)  # whatever the caller's RNG state, --seed decides the random weights
    main(["--backbone", "tiny", "--no-check", "--out", str(tmp_path / "a.onnx")])
    torch.randn(10)
    main(["--backbone", "tiny", "--no-check", "--out", str(tmp_path / "b.onnx")])
    main(["--backbone", "tiny", "--no-check", "--seed", "1", "--out", str(tmp_path / "c.onnx")])
    a, b, c = ((tmp_path / f"{n}.onnx").read_bytes() for n in "abc")
    assert a == b and a != c
