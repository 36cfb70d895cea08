"""embed / compare on the real photos with the tiny random-weight backbone; ONNX backend equals PyTorch."""

import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import models
from alignment.align import align_face
from inference.backends import OnnxBackend, TorchBackend, build_backend
from inference.compare import run_compare
from inference.embedder import run_embed

PHOTOS = ["img1.jpeg", "img2.jpeg", "img3.jpeg"]
MIN_FACE = 40  # faces here are >= 60 px: a shorter pyramid keeps the tests fast on a busy 2-core machine


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return models.build_backbone("tiny").eval()


@pytest.fixture
def photo_dir(shared_data, tmp_path) -> Path:
    """img1-3 plus a blank image (no face) in a scratch folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copyfile(shared_data / "faces" / name, folder / name)
    cv2.imwrite(str(folder / "blank.png"), np.full((150, 200, 3), 128, np.uint8))
    return folder


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_embed_writes_every_output(photo_dir, weights, tiny, tmp_path):
    out = tmp_path / "results"
    summary = run_embed(photo_dir, out, backend=TorchBackend(tiny), batch_size=2, mtcnn_weights=weights,
                        min_face_size=MIN_FACE, progress=False)
    assert summary["embedded"] == 3 and summary["skipped"] == 1
    emb, norms = np.load(out / "embeddings.npy"), np.load(out / "norms.npy")
    assert emb.shape == (3, 512) and emb.dtype == np.float32 and norms.shape == (3, 1)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    rows = _read_csv(out / "index.csv")
    assert [r["path"] for r in rows] == PHOTOS and all(r["method"] == "mtcnn" for r in rows)
    np.testing.assert_allclose([float(r["norm"]) for r in rows], norms[:, 0], rtol=1e-3)
    for r in rows:
        assert cv2.imread(str(out / r["aligned"])).shape == (112, 112, 3)
    assert [(Path(r["path"]).name, r["reason"]) for r in _read_csv(out / "skipped.csv")] == [
        ("blank.png", "no face detected")]
    # Row order: row 1 is img2 (re-embed its crop directly; batch composition must not matter in eval mode).
    from alignment.mtcnn import MTCNN

    img = cv2.imread(str(photo_dir / "img2.jpeg"))
    _, landmarks = MTCNN(weights, min_face_size=MIN_FACE).detect(img)
    direct, _ = TorchBackend(tiny).embed(align_face(img, landmarks[0])[None])
    np.testing.assert_allclose(emb[1], direct[0], atol=1e-4)


def test_aligned_crops_pass_through_without_detector(tmp_path, tiny):
    folder = tmp_path / "aligned"
    folder.mkdir()
    crop = np.random.default_rng(0).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    cv2.imwrite(str(folder / "a.png"), crop)
    # The weights path does not exist: passthrough must not even build the detector.
    run_embed(folder, tmp_path / "out", backend=TorchBackend(tiny), mtcnn_weights=tmp_path / "none.npz",
              progress=False)
    rows = _read_csv(tmp_path / "out" / "index.csv")
    assert [r["method"] for r in rows] == ["passthrough"]
    np.testing.assert_allclose(np.load(tmp_path / "out" / "embeddings.npy")[0],
                               TorchBackend(tiny).embed(crop[None])[0][0], atol=1e-5)


def test_compare_writes_matrix_pairs_and_heatmap(photo_dir, weights, tiny, tmp_path):
    paths = [photo_dir / n for n in PHOTOS]
    result = run_compare(paths, None, tmp_path / "cmp", backend=TorchBackend(tiny), mtcnn_weights=weights,
                         min_face_size=MIN_FACE, progress=False)
    sim = result["similarity"]
    assert sim.shape == (3, 3) and result["rows"] == PHOTOS
    np.testing.assert_allclose(np.diag(sim), 1.0, atol=1e-5)
    np.testing.assert_allclose(sim, sim.T, atol=1e-6)
    table = list(csv.reader((tmp_path / "cmp" / "similarity.csv").read_text().splitlines()))
    assert table[0][1:] == PHOTOS and np.allclose(np.array([r[1:] for r in table[1:]], float), sim, atol=1e-4)
    assert len(_read_csv(tmp_path / "cmp" / "pairs.csv")) == 3  # unordered pairs within one set
    assert cv2.imread(str(tmp_path / "cmp" / "heatmap.png")) is not None

    # A folder against an image list: the blank image is reported, not fatal.
    other = tmp_path / "b"
    other.mkdir()
    shutil.copyfile(photo_dir / "img1.jpeg", other / "again.jpeg")
    shutil.copyfile(photo_dir / "blank.png", other / "blank.png")
    result = run_compare(other, [photo_dir / "img1.jpeg", photo_dir / "img3.jpeg"], tmp_path / "cmp2",
                         backend=TorchBackend(tiny), mtcnn_weights=weights, min_face_size=MIN_FACE, progress=False)
    assert result["rows"] == ["again.jpeg"] and result["cols"] == ["img1.jpeg", "img3.jpeg"]
    np.testing.assert_allclose(result["similarity"], sim[[0], :][:, [0, 2]], atol=1e-5)
    assert [Path(p).name for p in result["skipped"]] == ["blank.png"]
    assert len(_read_csv(tmp_path / "cmp2" / "pairs.csv")) == 2


def test_checkpoint_backend_loads_adaface_layout(tmp_path, tiny):
    """A released-AdaFace-style .ckpt ({'state_dict': {'model.<key>': ...}}) through build_backend."""
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in tiny.state_dict().items()}}, ckpt)
    backend = build_backend(ckpt, "tiny")
    batch = np.random.default_rng(1).integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    np.testing.assert_allclose(backend.embed(batch)[0], TorchBackend(tiny).embed(batch)[0], atol=1e-5)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        build_backend(tmp_path / "missing.ckpt", "tiny")


@pytest.mark.slow  # the dynamo ONNX export takes several CPU seconds
def test_onnx_backend_equals_torch(tmp_path, tiny):
    export = pytest.importorskip("deploy.export")
    import onnx

    model = models.build_backbone("tiny").eval()
    model.load_state_dict(tiny.state_dict())
    model.meta = {**model.meta, "color": "RGB"}
    rgb_path = tmp_path / "tiny_rgb.onnx"
    export.export_onnx(model, rgb_path, verbose=False)
    # Same weights declared BGR: edit the metadata instead of a second (slow) export.
    proto = onnx.load(str(rgb_path))
    for prop in proto.metadata_props:
        if prop.key == "color":
            prop.value = "BGR"
    bgr_path = tmp_path / "tiny_bgr.onnx"
    onnx.save(proto, str(bgr_path))

    batch = np.random.default_rng(2).integers(0, 255, (4, 112, 112, 3), dtype=np.uint8)
    results = {}
    for color, path in [("RGB", rgb_path), ("BGR", bgr_path)]:
        onnx_backend = build_backend(path)
        assert isinstance(onnx_backend, OnnxBackend) and onnx_backend.color == color
        model.meta = {**model.meta, "color": color}
        emb_o, norm_o = onnx_backend.embed(batch)
        emb_t, norm_t = TorchBackend(model).embed(batch)
        np.testing.assert_allclose(emb_o, emb_t, atol=1e-4)
        np.testing.assert_allclose(norm_o, norm_t, rtol=1e-4)
        results[color] = emb_o
    assert np.abs(results["RGB"] - results["BGR"]).max() > 1e-3  # the colour order really changes the input


@pytest.mark.slow  # a main.py subprocess (Hydra + imports) takes several seconds
def test_main_embed_task(photo_dir, weights, tmp_path):
    """The documented command: `python main.py task=embed embed.input_dir=... checkpoint=... output_dir=...`."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    ckpt = tmp_path / "tiny.pt"
    torch.manual_seed(0)
    torch.save(models.build_backbone("tiny").state_dict(), ckpt)
    out = tmp_path / "results"
    cmd = [sys.executable, "main.py", "task=embed", f"embed.input_dir={photo_dir}", f"checkpoint={ckpt}",
           f"output_dir={out}", "backbone=tiny", f"photo.mtcnn_weights={weights}", "num_threads=1",
           f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("embeddings.npy", "norms.npy", "index.csv", "skipped.csv"):
        assert (out / name).is_file(), name
    assert np.load(out / "embeddings.npy").shape == (3, 512)
    assert "blank" in (out / "skipped.csv").read_text()
