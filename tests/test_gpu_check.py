"""bench/gpu_check.py in its CPU quick mode (every item's code path on tiny sizes), the TrainingThroughput callback,
the callbacks builder with a settings-only node, and the pin_memory default."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from training.throughput import TrainingThroughput

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_quick_runs_every_item_on_cpu(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    items = results["items"]
    assert items["compile"]["status"] == items["loop"]["status"] == "skipped (--quick)"
    assert all(items[name]["status"] == "ok" for name in items if name not in ("compile", "loop")), items
    rows = {row["what"]: row for item in items.values() for row in item.get("result", {}).get("rows", [])}
    checks = [row for row in rows.values() if "check" in row]
    assert len(checks) >= 3 and all(row["check"] == "pass" for row in checks), checks
    step = next(row for what, row in rows.items() if what.startswith("tiny bf16-mixed"))
    assert step["images_per_s"] > 0 and step["gflops_per_image"] > 0 and step["mfu_measured"] > 0
    loop = next(row for what, row in rows.items() if what.startswith("main.py training loop"))
    assert loop["images_per_s"] > 0 and 0 <= loop["host_gap_fraction"] < 1
    assert "| numerics |" in (out / "table.md").read_text()


def _fake(world_size=1):
    module = SimpleNamespace(device=torch.device("cpu"), logged={})
    module.log = lambda name, value, **kw: module.logged.__setitem__(name, value)
    trainer = SimpleNamespace(world_size=world_size, is_global_zero=True, default_root_dir=None)
    return trainer, module


def test_throughput_counts_training_batches_only_and_the_gap_between_them(tmp_path, monkeypatch):
    # perf_counter readings in call order; batch start of a new segment reads twice (before and after the sync)
    clock = iter([0.0,              # batch 0 start (warm-up, not counted)
                  1.0, 2.0,         # batch 1 start: the segment opens at 2.0
                  3.0,              # batch 1 end: 1 s
                  3.5, 4.0,         # batch 2 start (gap 0.5), end: 1 s
                  100.0, 100.0,     # validation ran (98 s, not counted); batch 3 starts a new segment at 100.0
                  101.0])           # batch 3 end: 1 s
    monkeypatch.setattr("training.throughput.time.perf_counter", lambda: next(clock))
    trainer, module = _fake(world_size=2)
    trainer.default_root_dir = str(tmp_path)
    cb = TrainingThroughput(warmup_steps=1)
    batch = (torch.zeros(4, 3, 2, 2), torch.zeros(4))
    for i in range(3):
        cb.on_train_batch_start(trainer, module, batch, i)
        cb.on_train_batch_end(trainer, module, None, batch, i)
    cb.on_validation_start(trainer, module)
    cb.on_train_batch_start(trainer, module, batch, 3)
    cb.on_train_batch_end(trainer, module, None, batch, 3)
    cb.on_train_epoch_end(trainer, module)
    assert cb.images == 3 * 4 * 2 and cb.steps == 3 and cb.seconds == pytest.approx(3.0)
    assert module.logged["train/images_per_s"] == pytest.approx(8.0)
    assert module.logged["train/host_gap"] == pytest.approx(0.5 / 3)
    cb.on_train_end(trainer, module)
    summary = json.loads((tmp_path / "throughput.json").read_text())
    assert summary["images_per_s"] == pytest.approx(8.0) and summary["steps"] == 3


def test_throughput_without_measured_steps_reports_null_not_nan(tmp_path):
    trainer, module = _fake()
    trainer.default_root_dir = str(tmp_path)
    cb = TrainingThroughput(warmup_steps=5)
    cb.on_train_end(trainer, module)
    summary = json.loads((tmp_path / "throughput.json").read_text())
    assert summary["images_per_s"] is None and summary["host_gap_fraction"] is None
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainingThroughput(warmup_steps=-1)


def test_callback_node_without_target_is_skipped_not_instantiated(compose):
    from tasks.train import build_callbacks

    cfg = compose("debug=smoke", "callbacks=none")
    assert "_target_" not in cfg.callbacks.steps  # the smoke preset tunes a callback this group lacks
    assert build_callbacks(cfg.callbacks, validating=True) == []


@pytest.mark.parametrize("setting, device, expected", [(None, "cuda", True), (None, "cpu", False),
                                                        (True, "cpu", True), (False, "cuda", False)])
def test_pin_memory_default_follows_the_training_device(compose, setting, device, expected):
    from dataset.datamodule import FaceDataModule

    cfg = compose("debug=smoke")
    cfg.data.pin_memory = setting
    dm = FaceDataModule(cfg.data, cfg.augmentation, training=None)
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
    assert dm._pin_memory() is expected
