"""The quality probe (same held-out faces at every level) and the per-epoch quality-signal callback."""

import json
from types import SimpleNamespace

import numpy as np
import torch

from dataset.synthetic.probe import PROBE_LEVELS, quality_probe


def test_probe_renders_every_level_deterministically():
    images, levels = quality_probe(identities=2, preset="smoke", seed=0)
    assert images.shape == (10, 112, 112, 3) and images.dtype == np.uint8
    assert levels == list(PROBE_LEVELS) * 2
    again, _ = quality_probe(identities=2, preset="smoke", seed=0)
    assert np.array_equal(images, again)
    # the same face degrades: high-frequency energy falls from hq to the lowest levels
    detail = [np.abs(np.diff(img.astype(float), axis=1)).mean() for img in images[:5]]
    assert detail[0] > detail[3]


def test_callback_records_norms_ema_and_gates_and_keeps_history_on_resume(tmp_path):
    from tasks.config import compose_config
    from tasks.train import build_module
    from training.quality_signal import QualitySignal

    cfg = compose_config(["debug=smoke", "validation.sets=[]"], output_dir=str(tmp_path / "run"))
    module = build_module(cfg, num_classes=5)
    trainer = SimpleNamespace(current_epoch=0, global_step=7, is_global_zero=True, callback_metrics={})
    callback = QualitySignal(tmp_path / "run", identities=2, preset="smoke")
    callback.on_fit_start(trainer, module)
    callback.on_train_epoch_start(trainer, module)
    for value in (0.0, 0.5):
        trainer.callback_metrics = {"qg/cls_gated_out": torch.tensor(value), "qg/pairs_selected": torch.tensor(1.0)}
        callback.on_train_batch_end(trainer, module, None, None, 0)
    module.train()
    callback.on_train_epoch_end(trainer, module)
    assert module.training  # measured in eval mode, handed back in train mode
    history = json.loads((tmp_path / "run" / "quality_signal.json").read_text())
    entry = history[0]
    assert set(entry["norm"]) == set(PROBE_LEVELS) and entry["step"] == 7
    assert all(np.isfinite(v["mean"]) and v["p10"] <= v["p50"] <= v["p90"] for v in entry["norm"].values())
    assert entry["ema_mean"] == 20.0 and entry["ema_std"] == 100.0  # AdaFace's start, untouched by measuring
    assert entry["cls_gated_out"] == 0.25 and entry["pairs_selected"] == 1.0
    assert (tmp_path / "run" / "quality_norms.png").stat().st_size > 1000

    resumed = QualitySignal(tmp_path / "run", identities=2, preset="smoke")
    resumed.on_fit_start(SimpleNamespace(current_epoch=1), module)
    assert [e["epoch"] for e in resumed.history] == [0]
