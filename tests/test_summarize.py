"""Sweep summarizer on a fake Hydra multirun folder with one failed job; ValidationSuite on tiny packed sets."""

import json

import numpy as np
import pytest

from validation import summarize

METRICS = {"scface/d1": 50.0, "scface/d2": 80.0, "scface/d3": 90.0, "tinyface/rank_1": 40.0,
           "ijbb/tar_far_1e-4": 30.0, "val/lfw_acc": 90.0, "val/cfp_fp_acc": 80.0}


def _job(sweep, num, overrides, metrics=None):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_summarize_sweep_with_failed_job(tmp_path, capsys):
    sweep = tmp_path / "multirun"
    _job(sweep, 0, ["experiment=baseline", "trainer.max_epochs=2"], METRICS)
    _job(sweep, 1, ["experiment=A", "trainer.max_epochs=2"])  # crashed: no metrics.json
    _job(sweep, 2, ["experiment=qgface", "trainer.max_epochs=2"], dict(METRICS, **{"scface/d1": 62.0}))
    assert summarize.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| setting | SCface d1")
    # hq avg = mean(90, 80) = 85; all avg = mean(50, 80, 90, 40, 30, 85) = 62.5
    assert lines[1] == "| baseline | 50.00 | 80.00 | 90.00 | 40.00 | 30.00 | 85.00 | 62.50 |"
    assert lines[2] == "| A (failed) | - | - | - | - | - | - | - |"
    assert lines[3].startswith("| qgface | 62.00 |")
    assert "Failed jobs: 1 (A): no metrics.json" in out
    assert (sweep / "summary.md").read_text().startswith("| setting |")
    assert (sweep / "summary.png").stat().st_size > 1000


def test_summarize_all_failed_and_missing_dir(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, 0, ["experiment=C"])
    (sweep / "0" / "metrics.json").write_text("{not json")
    assert summarize.main([str(sweep)]) == 1
    assert "unreadable metrics.json" in (sweep / "summary.md").read_text()
    assert summarize.main([str(tmp_path / "nope")]) == 2


def test_validation_suite_on_tiny_sets(tmp_path):
    pytest.importorskip("torch")
    from dataset.convert import write_bin
    from dataset.evalsets import write_packed_set
    from validation.suite import ValidationSuite

    img = np.full((112, 112, 3), 128, np.uint8)
    write_bin(tmp_path / "lfw.bin", [img] * 40, [True, False] * 10)
    write_packed_set(tmp_path / "scface", [(img, {"name": f"{i}", "label": lab, "split": sp, "camera": "c",
                                                  "distance": d})
                                           for i, (lab, sp, d) in enumerate([(1, "gallery", 0), (2, "gallery", 0),
                                                                             (1, "probe", 1), (2, "probe", 2),
                                                                             (1, "probe", 3)])],
                     ["split", "camera", "distance"])
    suite = ValidationSuite(["lfw", "scface"], tmp_path)
    datasets = suite.datasets()
    assert [len(d) for d in datasets] == [40, 5]
    x, index = datasets[1][3]
    assert tuple(x.shape) == (3, 112, 112) and str(x.dtype) == "torch.uint8" and index == 3

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((40, 8)).astype(np.float32)
    emb[1::4] = emb[0::4]  # pairs 0, 2, 4, ... (issame True) identical
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    ones = np.ones((40, 1), np.float32)
    metrics = suite.compute(0, emb, ones, emb, ones)
    assert metrics == {"val/lfw_acc": 100.0}
    assert suite.averages(metrics) == {"val/hq_avg": 100.0}
    sc = np.array([[1, 0], [0, 1], [1, 0.1], [1, 0], [0.9, 0.2]], np.float32)
    sc /= np.linalg.norm(sc, axis=1, keepdims=True)
    metrics.update(suite.compute(1, sc, np.ones((5, 1)), None, None))
    assert metrics["scface/d1"] == 100.0 and metrics["scface/d2"] == 0.0 and metrics["scface/d3"] == 100.0
    assert suite.all_avg(metrics) is None  # tinyface and IJB-B missing
    assert "SCface d1" in suite.summary(metrics)
    with pytest.raises(ValueError, match="4 embeddings for 5 images"):
        suite.compute(1, sc[:4], np.ones((4, 1)))
    with pytest.raises(FileNotFoundError, match="ijbb"):
        ValidationSuite(["ijbb"], tmp_path)
