"""INT8 / fp16 ONNX artifacts: written beside the fp32 export, checked against fp32 torch on held-out faces (cosine
per face; non-finite outputs and a low cosine fail and publish nothing), metadata kept, an artifact's identity is its
own file; bad ONNX metadata (missing, colour or input size disagreeing) is refused by thresholds files and galleries."""

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

import models
from deploy.export import export_artifacts, export_onnx
from deploy.quantize import compare_with_torch, read_faces
from inference.gallery import check_model, merge
from inference.model_identity import load_thresholds, model_identity


def face_folder(root: Path, count: int) -> Path:
    """Smooth random 112x112 'faces' (blurred noise: activations like a photo's, not white noise)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for i in range(count):
        img = cv2.GaussianBlur(rng.integers(0, 255, (112, 112, 3)).astype(np.uint8), (9, 9), 3)
        cv2.imwrite(str(root / f"{i:03d}.png"), img)
    return root


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quant")
    torch.manual_seed(0)
    model = models.build_backbone("tiny").eval()
    faces = face_folder(tmp / "faces", 48)
    res = export_artifacts(model, tmp / "tiny.onnx", int8=True, fp16=True, calibration=faces,
                           calibration_count=32, check_count=16, min_cosine=0.95, verbose=False)
    return tmp, model, faces, res


def test_int8_and_fp16_are_checked_small_and_named_by_their_own_hash(artifacts):
    tmp, _, _, res = artifacts
    assert set(res) == {"fp32", "int8", "fp16"}
    for precision in ("int8", "fp16"):
        check = res[precision]["check"]
        assert check["faces"] == 16 and check["cosine_min"] <= check["cosine_mean"] <= 1.0 + 1e-6
    assert res["int8"]["check"]["cosine_mean"] >= 0.98 and res["fp16"]["check"]["cosine_mean"] >= 0.999
    assert res["int8"]["size_mb"] <= 0.3 * res["fp32"]["size_mb"]
    meta = {p.key: p.value for p in onnx.load(str(tmp / "tiny_int8.onnx")).metadata_props}
    assert meta["precision"] == "int8" and meta["color"] == "BGR" and meta["input_size"] == "112"
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(tmp / "tiny_int8.onnx")).graph.node)
    ids = {p: model_identity(tmp / name) for p, name in (("fp32", "tiny.onnx"), ("int8", "tiny_int8.onnx"),
                                                          ("fp16", "tiny_fp16.onnx"))}
    assert len({i["sha256"] for i in ids.values()}) == 3
    doc = {"model": ids["fp32"], "protocols": {}}
    (tmp / "thresholds.json").write_text(__import__("json").dumps(doc))
    with pytest.raises(ValueError, match="refusing .*thresholds.json.*sha256"):
        load_thresholds(tmp / "thresholds.json", ids["int8"])


def test_failing_artifact_is_not_written(artifacts, tmp_path):
    _, model, faces, _ = artifacts
    with pytest.raises(RuntimeError, match="int8 artifact's mean cosine .* not written"):
        export_artifacts(model, tmp_path / "m.onnx", int8=True, calibration=faces, calibration_count=32,
                         check_count=16, min_cosine=1.01, verbose=False)
    assert (tmp_path / "m.onnx").exists() and not (tmp_path / "m_int8.onnx").exists()
    with pytest.raises(ValueError, match="--int8 needs --calibration"):
        export_artifacts(model, tmp_path / "n.onnx", int8=True, verbose=False)
    with pytest.raises(ValueError, match="80 faces needed .* only 48"):
        read_faces(faces, 80)


def test_non_finite_artifact_output_fails_the_check(artifacts, tmp_path):
    _, _, faces, _ = artifacts
    torch.manual_seed(0)
    bad = models.build_backbone("tiny").eval()
    with torch.no_grad():
        next(bad.parameters()).fill_(float("nan"))
    export_onnx(bad, tmp_path / "nan.onnx", check=False, verbose=False)
    with pytest.raises(RuntimeError, match="non-finite embedding"):
        compare_with_torch(bad, tmp_path / "nan.onnx", read_faces(faces, 4), "nan.onnx")


def rewrite_metadata(src: Path, dst: Path, **changes) -> Path:
    proto = onnx.load(str(src))
    meta = {p.key: p.value for p in proto.metadata_props}
    meta.update({k: v for k, v in changes.items() if v is not None})
    for k in [k for k, v in changes.items() if v is None]:
        meta.pop(k)
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(dst))
    return dst


def test_bad_onnx_metadata_is_refused(artifacts, tmp_path):
    tmp = artifacts[0]
    good = model_identity(tmp / "tiny_int8.onnx")
    with pytest.raises(ValueError, match="lacks color"):
        model_identity(rewrite_metadata(tmp / "tiny_int8.onnx", tmp_path / "bare.onnx", color=None))
    with pytest.raises(ValueError, match="input_size 96 disagrees"):
        model_identity(rewrite_metadata(tmp / "tiny_int8.onnx", tmp_path / "size.onnx", input_size="96"))
    rgb = model_identity(rewrite_metadata(tmp / "tiny_int8.onnx", tmp_path / "rgb.onnx", color="RGB"))
    (tmp_path / "thresholds.json").write_text(__import__("json").dumps({"model": good, "protocols": {}}))
    with pytest.raises(ValueError, match="color: thresholds file has 'BGR', model has 'RGB'"):
        load_thresholds(tmp_path / "thresholds.json", rgb)
    gallery = merge(None, np.eye(1, 512, dtype=np.float32), ["a"], ["a/1.png"], {**good, "flip_fusion": None}, None)
    with pytest.raises(ValueError, match="color: gallery has 'BGR', probe model has 'RGB'"):
        check_model(gallery, {**rgb, "flip_fusion": None}, "gallery.npz")


def test_exports_carry_no_per_node_debug_metadata(artifacts):
    tmp = artifacts[0]
    for name in ("tiny.onnx", "tiny_int8.onnx", "tiny_fp16.onnx"):
        proto = onnx.load(str(tmp / name))
        assert not any(len(n.metadata_props) for n in proto.graph.node), name
        assert {p.key for p in proto.metadata_props} >= {"color", "input_size", "mean", "std"}


def test_compact_graph_is_lossless_and_smaller(artifacts, monkeypatch):
    """Against the quantizer's own output (compaction switched off): same outputs bit for bit, a smaller file, the
    graph's input and output names kept, activation quantize/dequantize pairs left whole."""
    import onnxruntime as ort

    from deploy import onnx_graph, quantize

    tmp, model, faces, _ = artifacts
    calibration = quantize.model_inputs(read_faces(faces, 48)[:32], model.meta)  # the fixture's calibration faces
    monkeypatch.setattr(quantize, "compact_graph", lambda proto: proto)
    verbose = onnx.load_from_string(quantize.quantize_int8(tmp / "tiny.onnx", calibration))
    monkeypatch.undo()
    compacted = onnx_graph.compact_graph(onnx.load_from_string(verbose.SerializeToString()))
    onnx.checker.check_model(compacted)

    assert len(compacted.SerializeToString()) < len(verbose.SerializeToString())
    assert [v.name for v in compacted.graph.input] == ["input"]
    assert {v.name for v in compacted.graph.output} == {"embedding", "norm"}
    stored = {t.name for t in compacted.graph.initializer}
    dropped = [n for n in compacted.graph.node if n.op_type == "DequantizeLinear" and len(n.input) == 2]
    assert dropped and all(n.input[0] in stored for n in dropped)  # only weights / biases lose their zero point
    assert all(len(n.input) == 3 for n in compacted.graph.node if n.op_type == "QuantizeLinear")
    x = np.random.default_rng(1).standard_normal((4, 3, 112, 112)).astype(np.float32)
    outs = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})
            for m in (verbose, compacted, onnx.load(str(tmp / "tiny_int8.onnx")))]
    for a, b, c in zip(*outs):
        assert np.array_equal(a, b) and np.array_equal(b, c)
