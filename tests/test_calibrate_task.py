"""task=calibrate end to end on the smoke preset, thresholds.json (atomic, model identity), decisions in compare
(and refusal of another model's thresholds), ONNX models in task=evaluate, config range checks."""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import models
from common import atomic
from inference.compare import run_compare

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("FACE_CACHE_DIR", str(REPO / ".cache" / "synthetic"))


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, save_tiny):
    """One task=calibrate run of a random tiny model on the smoke sets lfw (no identities), ijbb (subjects) and
    tinyface (identification only)."""
    from tasks import calibrate
    from tasks.config import compose_config

    tmp = tmp_path_factory.mktemp("calibrate")
    ckpt = save_tiny(tmp / "tiny.pt", 0)
    cfg = compose_config(["task=calibrate", "debug=smoke", f"checkpoint={ckpt}", "validation.sets=[lfw,ijbb,tinyface]",
                          "calibrate.fars=[0.1,1e-3]", "calibrate.replicates=50", "calibrate.edc_far=0.1",
                          f"calibrate.embeddings_cache={tmp / 'emb.npz'}"], output_dir=str(tmp / "run"))
    calibrate.run(cfg)
    return cfg, ckpt, tmp / "run"


def test_thresholds_file_per_protocol(calibrated):
    cfg, ckpt, run = calibrated
    doc = json.loads((run / "thresholds.json").read_text())
    from inference.model_identity import file_sha256

    assert doc["model"]["sha256"] == file_sha256(ckpt) and doc["model"]["architecture"] == "tiny"
    assert doc["model"]["color"] == "BGR" and doc["model"]["flip_fusion"] == "pre_norm_add"
    assert set(doc["protocols"]) == {"lfw", "ijbb"} and "tinyface" in doc["skipped"]
    assert doc["protocols"]["lfw"]["bootstrap"] == "pairs" and "no identities" in doc["protocols"]["lfw"]["pair_source"]
    ijbb = doc["protocols"]["ijbb"]
    assert ijbb["bootstrap"] == "subjects" and ijbb["subjects"] > 1
    resolved, unresolved = ijbb["entries"]
    assert resolved["threshold"] is not None and len(resolved["threshold_interval"]) == 2
    assert "far" in resolved["heldout"] or resolved["heldout"]["threshold"] is None
    assert unresolved["threshold"] is None and unresolved["needed_impostors"] == 3000
    assert "edc" in ijbb and ijbb["edc"]["far"] == 0.1
    assert (run / "calibration.md").is_file() and (run / "det_ijbb.png").is_file()
    assert (run / "edc_model_ijbb.png").is_file()


def test_thresholds_json_is_written_atomically(calibrated, monkeypatch):
    """A failing write leaves the previous thresholds.json intact and no temporary behind."""
    from tasks import calibrate

    cfg, _, run = calibrated
    before = (run / "thresholds.json").read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        calibrate.run(cfg)
    assert (run / "thresholds.json").read_bytes() == before
    assert not list(run.glob(".thresholds.json.*"))


def crops(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (112, 112, 3), dtype=np.uint8))
    return folder


def test_compare_prints_decisions_and_refuses_other_models(calibrated, tmp_path, capsys, save_tiny):
    _, ckpt, run = calibrated
    folder = crops(tmp_path / "crops")
    res = run_compare(folder, None, tmp_path / "cmp", checkpoint=ckpt, arch="tiny", progress=False,
                      thresholds=run / "thresholds.json", far=0.1, protocol="ijbb")
    assert set(res["decisions"].values()) <= {"match", "no match", "rejected: low quality"}
    assert len(res["decisions"]) == 3
    out = capsys.readouterr().out
    assert "decisions at FAR 0.1 of ijbb" in out
    assert res["rule"]["flip_fusion"] == "pre_norm_add"
    header = (tmp_path / "cmp" / "pairs.csv").read_text().splitlines()[0]
    assert header == "a,b,similarity,decision"

    other = save_tiny(tmp_path / "other.pt", 1)
    with pytest.raises(ValueError, match="refusing .*thresholds.json.*sha256"):
        run_compare(folder, None, tmp_path / "cmp2", checkpoint=other, arch="tiny", progress=False,
                    thresholds=run / "thresholds.json", far=0.1)
    with pytest.raises(ValueError, match="not resolved"):
        run_compare(folder, None, tmp_path / "cmp3", checkpoint=ckpt, arch="tiny", progress=False,
                    thresholds=run / "thresholds.json", far=1e-3, protocol="ijbb")


def test_every_task_has_its_config_and_runner():
    """main.py runs `tasks.<task>.run(cfg)`: each name of tasks.schemas.TASKS is a conf/task/*.yaml and a module
    whose `run` takes the config."""
    import importlib
    import inspect

    from tasks.schemas import TASKS

    assert sorted(TASKS) == sorted(p.stem for p in (REPO / "conf" / "task").glob("*.yaml"))
    for name in TASKS:
        assert list(inspect.signature(importlib.import_module(f"tasks.{name}").run).parameters) == ["cfg"], name


def test_config_ranges_fail_before_any_data(compose):
    from tasks.config import validate_config

    for override, key in (("calibrate.fars=[0.1,1.5]", "calibrate.fars"), ("calibrate.replicates=0",
                          "calibrate.replicates"), ("calibrate.confidence=1", "calibrate.confidence"),
                          ("compare.far=0", "compare.far")):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            validate_config(compose(f"task={key.split('.')[0]}", override))
    cfg = compose("task=calibrate", "ensemble=demo_pair", "ensemble.members.0.checkpoint=a.pt",
                  "ensemble.members.1.checkpoint=b.pt", "ensemble.weights=[1]")
    with pytest.raises(ValueError, match="ensemble.weights"):
        validate_config(cfg)


def test_evaluate_takes_an_onnx_model(tmp_path, save_tiny):
    """The same weights as a checkpoint and as an ONNX file give the same embeddings and metrics."""
    from deploy.export import export_onnx
    from tasks.config import compose_config
    from tasks.evaluate import embed_sets
    from tasks.train import build_suite

    ckpt = save_tiny(tmp_path / "tiny.pt", 0)
    model = models.build_backbone("tiny")
    model.load_state_dict(torch.load(ckpt, weights_only=True))
    onnx = export_onnx(model.eval(), tmp_path / "tiny.onnx", check=False)["path"]
    results = {}
    for label, path in (("ckpt", ckpt), ("onnx", onnx)):
        cfg = compose_config(["task=evaluate", "debug=smoke", f"checkpoint={path}", "validation.sets=[lfw]"],
                             output_dir=str(tmp_path / label))
        results[label] = embed_sets(cfg, build_suite(cfg), keep=True)
    (m_ckpt, e_ckpt, _), (m_onnx, e_onnx, _) = results["ckpt"], results["onnx"]
    for field in ("emb", "norm", "emb_flip", "norm_flip"):
        np.testing.assert_allclose(e_onnx["lfw"][field], e_ckpt["lfw"][field], atol=1e-4)
    assert m_onnx["val/lfw_acc"] == pytest.approx(m_ckpt["val/lfw_acc"])

    from inference.model_identity import file_sha256, model_identity

    identity = model_identity(onnx, None, "pre_norm_add")
    assert identity["architecture"] == "onnx:tiny" and identity["color"] == "BGR"
    assert identity["sha256"] == file_sha256(onnx) != model_identity(ckpt, "tiny")["sha256"]


def test_evaluate_names_an_onnx_model_by_its_own_metadata(tmp_path):
    """The printout says which model was evaluated: the ONNX file's name and precision, not the config's backbone."""
    from deploy.export import export_onnx
    from tasks.config import compose_config
    from tasks.evaluate import model_label

    path = export_onnx(models.build_backbone("tiny").eval(), tmp_path / "m.onnx", check=False)["path"]
    cfg = compose_config(["task=evaluate", "debug=smoke", "backbone=mobilefacenet", f"checkpoint={path}"],
                         output_dir=str(tmp_path / "run"))
    assert model_label(cfg) == "ONNX tiny, fp32"
    cfg.checkpoint = str(tmp_path / "last.ckpt")
    assert model_label(cfg) == "mobilefacenet"
