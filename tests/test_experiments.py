"""The QGFace ablation configs (conf/experiment): each composes to the setting of docs/method.md's Table I, and its
augmentation and objective nodes build. The full `debug=smoke` runs are slow tests."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dataset.augment import TRANSFORMS
from losses.objective import ClassificationObjective, QGFaceObjective, build_objective_from_node

CONF = Path(__file__).resolve().parents[1] / "conf"
# experiment -> (augmentation transform target of the degraded/single view, views, objective, contrastive on)
TABLE = {
    "baseline": (None, 1, ClassificationObjective, False),
    "A": ("AdaFaceAugmenter", 1, ClassificationObjective, False),
    "B": ("AdaFaceAugmenter", 1, QGFaceObjective, False),
    "C": ("AdaFaceAugmenter", 2, QGFaceObjective, True),
    "D": ("QGFaceDegradation", 2, ClassificationObjective, False),
    "qgface": ("QGFaceDegradation", 2, QGFaceObjective, True),
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_experiment_matches_ablation_table(compose, name):
    target, views, objective_cls, contrastive = TABLE[name]
    cfg = compose(f"experiment={name}")
    aug = cfg.augmentation
    assert aug.views == views and aug.flip is True and cfg.head.name == "adaface"
    assert cfg.data.name == "synthetic_ablation"
    node = aug.single if views == 1 else aug.view_l
    if target is None:
        assert node is None
    else:
        transform = TRANSFORMS.build_from_node(node)
        assert type(transform).__name__ == target
        img = np.full((112, 112, 3), 128, dtype=np.uint8)
        assert transform(img).shape == img.shape
    if views == 2:
        assert aug.view_h is None and aug.single is None  # H = the original (flip only)
    objective = build_objective_from_node(cfg.objective)
    assert isinstance(objective, objective_cls)
    if isinstance(objective, QGFaceObjective):
        assert objective.threshold == 0.2 and (objective.queue_mode != "none") == contrastive
        assert objective.anchoring == "one_way" and objective.contrastive.mask_mode == "remove"


@pytest.mark.parametrize("override,expected", [("objective.threshold=null", None), ("objective.queue=batch", "batch"),
                                               ("objective.queue=momentum", "momentum"),
                                               ("objective.contrastive.mask_mode=zero_cosine", "zero_cosine"),
                                               ("+head.init_mean=0", 0)])
def test_documented_ablation_overrides_compose(compose, override, expected):
    cfg = compose("experiment=qgface", override)
    node = cfg
    for key in override.lstrip("+").split("=")[0].split("."):
        node = node[key]
    assert node == expected
    if override.startswith("+head"):  # the head builds with it: flat arguments go straight to the registry
        from losses import build_head_from_node

        assert float(build_head_from_node(cfg.head, 8, 3).batch_mean) == 0.0


def test_debug_smoke_wins_over_the_ablation_data(compose):
    cfg = compose("experiment=qgface", "debug=smoke")
    assert cfg.data.name == "synthetic_smoke"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TABLE))
def test_experiment_runs_debug_smoke(name, tmp_path):
    cmd = [sys.executable, "main.py", f"experiment={name}", "debug=smoke", f"hydra.run.dir={tmp_path}"]
    result = subprocess.run(cmd, cwd=CONF.parent, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_real_data_recipe_overrides_the_cpu_ablation_schedule(compose):
    """`experiment=qgface data=vggface2 optim=qgface_recipe`: the paper's lr and milestones, not the CPU ablation's."""
    cfg = compose("experiment=qgface", "data=vggface2", "backbone=ir_34", "optim=qgface_recipe",
                  "trainer.max_epochs=12")
    assert (cfg.data.name, cfg.backbone.name, cfg.objective.name) == ("vggface2", "ir_34", "qgface")
    assert cfg.optim.lr == 0.2 and list(cfg.optim.milestones) == [6, 9] and cfg.trainer.max_epochs == 12
    ablation = compose("experiment=qgface")
    assert ablation.optim.lr == 0.1 and list(ablation.optim.milestones) == [3, 4]


def test_qgface_ema0_is_qgface_with_the_released_norm_statistics_start(compose):
    from losses import build_head_from_node

    cfg, base = compose("experiment=qgface_ema0"), compose("experiment=qgface")
    assert cfg.objective == base.objective and cfg.augmentation == base.augmentation
    head = build_head_from_node(cfg.head, embedding_size=8, num_classes=3)
    assert float(head.batch_mean) == 0.0 and float(head.batch_std) == 0.0
    assert float(build_head_from_node(base.head, embedding_size=8, num_classes=3).batch_mean) == 20.0
