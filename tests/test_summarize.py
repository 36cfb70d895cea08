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
    assert lines[0].startswith("| setting | seeds | SCface d1")
    # hq avg = mean(90, 80) = 85; all avg = mean(50, 80, 90, 40, 30, 85) = 62.5
    assert lines[1] == "| baseline | 1 | 50.00 | 80.00 | 90.00 | 40.00 | 30.00 | 85.00 | 62.50 |"
    assert lines[2] == "| A (failed) | 0 | - | - | - | - | - | - | - |"
    assert lines[3].startswith("| qgface | 1 | 62.00 |")
    assert "Failed jobs: 1 (A): no metrics.json" in out
    assert (sweep / "summary.md").read_text().startswith("| setting |")
    assert (sweep / "summary.png").stat().st_size > 1000


def test_seeds_are_grouped_across_sweeps_with_mean_sd_and_paired_intervals(tmp_path, capsys):
    """Hand-made runs: baseline and qgface at seeds 42-44 (two sweep dirs), one run that differs in another override."""
    first, second = tmp_path / "seed42", tmp_path / "seeds43_44"
    d1 = {"baseline": [50.0, 52.0, 54.0], "qgface": [55.0, 56.0, 60.0]}  # differences 5, 4, 6
    for setting, values in d1.items():
        _job(first, len(list(first.glob("*"))) if first.exists() else 0, [f"experiment={setting}"],
             dict(METRICS, **{"scface/d1": values[0]}))
        for seed, value in zip((43, 44), values[1:]):
            num = len(list(second.glob("*"))) if second.exists() else 0
            _job(second, num, [f"experiment={setting}", f"seed={seed}"], dict(METRICS, **{"scface/d1": value}))
    _job(second, 9, ["experiment=qgface", "seed=43", "trainer.max_epochs=3"], dict(METRICS, **{"scface/d1": 99.0}))
    assert summarize.main([str(first), str(second), "--reference", "baseline"]) == 0
    out = capsys.readouterr().out
    main_table = out.split("Paired difference")[0]
    rows = {line.split(" | ")[0][2:]: line for line in main_table.splitlines() if line.startswith("| ")}
    # baseline: mean 52, sd 2; qgface: mean 57, sd sqrt(7) = 2.65; the max_epochs=3 run is its own setting, n = 1
    assert rows["experiment=baseline"].startswith("| experiment=baseline | 3 | 52.00 ± 2.00 | 80.00 ± 0.00 |")
    assert rows["experiment=qgface"].startswith("| experiment=qgface | 3 | 57.00 ± 2.65 |")
    assert rows["experiment=qgface, trainer.max_epochs=3"].startswith(
        "| experiment=qgface, trainer.max_epochs=3 | 1 | 99.00 |")  # never averaged with the others
    # paired differences vs baseline: 5, 4, 6 -> mean 5, sd 1, t(0.975, 2) = 4.3027 -> 5 ± 2.48
    diff_rows = out.split("Paired difference vs experiment=baseline")[1].splitlines()
    qg = next(line for line in diff_rows if line.startswith("| experiment=qgface |"))
    assert qg.startswith("| experiment=qgface | 3 | +5.00 [+2.52, +7.48]* | +0.00 [+0.00, +0.00] |")


def test_paired_difference_matches_the_t_formula():
    from validation.seeds import Setting, paired_difference

    a = Setting(("x",), {"42": {"m": 1.0}, "43": {"m": 3.0}, "44": {"m": 2.0}, "45": {"m": 10.0}})
    b = Setting(("y",), {"42": {"m": 0.0}, "43": {"m": 0.0}, "44": {"m": 2.0}})  # seed 45 missing: not paired
    d = paired_difference(a, b, "m")
    diffs = np.array([1.0, 3.0, 0.0])
    half = 4.302652729911275 * diffs.std(ddof=1) / np.sqrt(3)
    assert d.n == 3 and d.mean == pytest.approx(diffs.mean())
    assert (d.low, d.high) == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert not d.excludes_zero


def test_two_runs_of_one_setting_and_seed_are_refused(tmp_path):
    from validation.seeds import group_runs

    runs = [{"name": n, "overrides": ["experiment=A", "seed=1"], "metrics": {"m": 1.0}} for n in ("a", "b")]
    with pytest.raises(ValueError, match="seed 1"):
        group_runs(runs)


def test_summarize_all_failed_and_missing_dir(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, 0, ["experiment=C"])
    (sweep / "0" / "metrics.json").write_text("{not json")
    assert summarize.main([str(sweep)]) == 1
    assert "unreadable metrics.json" in (sweep / "summary.md").read_text()
    assert summarize.main([str(tmp_path / "nope")]) == 2


def test_validation_suite_on_tiny_sets(tmp_path):
    pytest.importorskip("torch")
    from dataset.evalsets import write_packed_set
    from dataset.formats import write_bin
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


def _run_dir(path, overrides, metrics):
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def test_evaluation_run_dirs_make_a_before_after_table_by_checkpoint(tmp_path, capsys):
    """Two task=evaluate run dirs on the folder protocol: one row per checkpoint, levels x F1 / acc / TAR@FAR (the
    lowest FAR both runs resolve)."""
    common = ["task=evaluate", "validation=folders", "validation.root=eval/"]
    before = {"folders/clean/f1": 88.6, "folders/clean/acc": 89.0, "folders/clean/tar_far_1e-1": 70.0,
              "folders/clean/tar_far_1e-2": 40.0, "folders/blur/f1": 85.3, "folders/blur/acc": 86.0,
              "folders/blur/tar_far_1e-1": 60.0, "folders/blur/tar_far_1e-2": 30.0}
    after = {k: v + 1.0 for k, v in before.items() if not k.endswith("1e-2")}  # 1e-2 unresolved here
    a = _run_dir(tmp_path / "eval_before", common + ["checkpoint=released.ckpt"], before)
    b = _run_dir(tmp_path / "eval_after", common + ["checkpoint=ft/last.ckpt"], after)
    assert summarize.main([str(a), str(b), "--out", str(tmp_path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert lines[0] == ("| setting | seeds | clean F1 | clean acc | clean TAR@1e-1 | blur F1 | blur acc | "
                        "blur TAR@1e-1 |")
    assert lines[1] == "| released.ckpt | 1 | 88.60 | 89.00 | 70.00 | 85.30 | 86.00 | 60.00 |"
    assert lines[2] == "| ft/last.ckpt | 1 | 89.60 | 90.00 | 71.00 | 86.30 | 87.00 | 61.00 |"
    assert (tmp_path / "summary.png").is_file()


def test_a_run_at_the_default_seed_is_grouped_by_the_seed_its_config_used(tmp_path, capsys):
    """No `seed=` on the command line: the seed comes from the run's config_resolved.yaml, not an assumed 42."""
    first, second = tmp_path / "s1", tmp_path / "s2"
    _job(first, 0, ["experiment=D"], dict(METRICS, **{"scface/d1": 50.0}))
    (first / "0" / "config_resolved.yaml").write_text("seed: 7\ntrainer:\n  max_epochs: 5\n")
    _job(second, 0, ["experiment=D", "seed=42"], dict(METRICS, **{"scface/d1": 54.0}))
    assert summarize.main([str(first), str(second)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| D |"))
    assert row.startswith("| D | 2 | 52.00 ± 2.83 |")


@pytest.mark.parametrize("content, reason", [
    (None, "no metrics.json"),
    ("{not json", "unreadable metrics.json"),
    ("{}", "empty metrics.json"),
    ('{"val/x": NaN}', "non-finite"),
    ("[1, 2]", "not a name -> value object"),
])
def test_metrics_file_refuses_what_is_not_a_metrics_file(tmp_path, content, reason):
    from validation.metrics_file import MetricsFileError, read_metrics

    if content is not None:
        (tmp_path / "metrics.json").write_text(content)
    with pytest.raises(MetricsFileError, match=reason):
        read_metrics(tmp_path)


def test_metrics_file_keeps_the_numbers_only(tmp_path):
    from validation.metrics_file import read_metrics

    (tmp_path / "metrics.json").write_text('{"val/a": 1, "val/b": 0.5, "note": "x", "flag": true}')
    assert read_metrics(tmp_path) == {"val/a": 1.0, "val/b": 0.5}
