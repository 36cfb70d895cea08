"""The config tree: every group option composes and instantiates; typos and wrong types fail readably."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from tasks.config import validate_config

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_default_config_is_the_demo(compose, tmp_path):
    cfg = compose()
    assert (cfg.task, cfg.backbone.name, cfg.head.name, cfg.data.name) == ("train", "tiny", "adaface", "synthetic_demo")
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.paths.ckpt_dir == str(tmp_path / "run" / "checkpoints")  # every run path derives from the run dir
    assert cfg.trainer.default_root_dir == str(tmp_path / "run")


@pytest.mark.parametrize("name", options("backbone"))
def test_backbone_options_build(compose, tmp_path, name):
    from models import build_backbone_from_node

    cfg = compose(f"backbone={name}")
    with torch.device("meta"):  # shapes only: big nets build instantly without allocating memory
        model = build_backbone_from_node(cfg.backbone)
    assert model.meta["embedding_size"] == 512


@pytest.mark.parametrize("name", options("head"))
def test_head_options_build(compose, tmp_path, name):
    from losses import build_head_from_node

    cfg = compose(f"head={name}")
    head = build_head_from_node(cfg.head, embedding_size=512, num_classes=7)
    emb = torch.nn.functional.normalize(torch.randn(4, 512), dim=1)
    logits = head(emb, torch.full((4, 1), 20.0), torch.tensor([0, 1, 2, 3]))
    assert logits.shape == (4, 7) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", options("objective"))
def test_objective_options_build(compose, tmp_path, name):
    """Each objective is its registry's factory and gives a finite loss with a gradient on a two-view step."""
    from losses import build_head_from_node
    from losses.objective import OBJECTIVES, build_objective_from_node

    cfg = compose(f"objective={name}")  # the default head, adaface: the one qgface's gates read
    objective = build_objective_from_node(cfg.objective)
    assert type(objective) is OBJECTIVES.get(name)
    head = build_head_from_node(cfg.head, embedding_size=16, num_classes=8)  # qgface's queue: one row per class
    embeddings = torch.nn.functional.normalize(torch.randn(8, 16), dim=1).requires_grad_()
    loss, logs = objective(head, embeddings, torch.full((8, 1), 20.0), torch.tensor([0, 1, 2, 3]), num_views=2)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0 and "loss_cls" in logs
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0


@pytest.mark.parametrize("name", options("augmentation"))
def test_augmentation_options_build(compose, tmp_path, name):
    from dataset.datamodule import build_transform

    aug = compose(f"augmentation={name}").augmentation
    assert aug.views in (1, 2)
    nodes = [aug.single] if aug.views == 1 else [aug.view_l, aug.view_h]
    img = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    for node in nodes:
        out = build_transform(node, aug.flip)(img)
        assert out.shape == (112, 112, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("name", options("data"))
def test_data_options_compose(compose, tmp_path, monkeypatch, name):
    monkeypatch.setenv("FACE_DATA_ROOT", str(tmp_path / "faces"))
    data = compose(f"data={name}").data
    assert data.batch_size > 0
    if data.pack_folders:  # your own folders: data.root is the user's, required
        with pytest.raises(ValueError, match="data.root"):
            validate_config(compose(f"data={name}"))
    elif data.synthetic is None:  # real data: root from FACE_DATA_ROOT, facts beside it
        assert data.rec.startswith(str(tmp_path / "faces")) and data.num_classes > 0


def test_missing_real_dataset_says_what_and_how(compose, tmp_path, monkeypatch):
    from dataset.datamodule import resolve_training_data

    monkeypatch.setenv("FACE_DATA_ROOT", str(tmp_path / "faces"))
    cfg = compose("data=ms1mv2")
    with pytest.raises(FileNotFoundError) as err:
        resolve_training_data(cfg.data, cfg.paths.cache_dir)
    msg = str(err.value)
    assert str(tmp_path / "faces" / "faces_emore" / "train.rec") in msg
    assert "python -m dataset.convert" in msg and "85742" in msg


@pytest.mark.parametrize("name", options("validation"))
def test_validation_options_compose(compose, name):
    val = compose(f"validation={name}").validation
    from validation.protocols import STANDARD_SETS

    known = set(STANDARD_SETS) | set(val.get("protocols") or {})
    assert val.sets and set(val.sets) <= known
    assert val.monitor in ("val/hq_avg", "val/all_avg", "folders/clean/acc")


@pytest.mark.parametrize("name", options("trainer"))
def test_trainer_options_instantiate(compose, tmp_path, name):
    import pytorch_lightning as pl

    from tasks.train import trainer_kwargs

    cfg = compose(f"trainer={name}")
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        pytest.skip("GPU trainer config: composes, but instantiating needs a GPU")
    trainer = pl.Trainer(**trainer_kwargs(cfg.trainer), logger=False, enable_checkpointing=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs


def test_callbacks_instantiate(compose, tmp_path):
    """Each callback is the class its `_target_` names, built with the node's arguments (those it keeps as
    attributes of the same name)."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    built = {}
    for name in options("callbacks"):
        for key, node in compose(f"callbacks={name}").callbacks.items():
            callback = instantiate(node)
            assert type(callback) is get_class(node._target_)
            kept = {k: v for k, v in node.items() if k != "_target_" and hasattr(callback, k)}
            assert kept and all(getattr(callback, k) == v for k, v in kept.items()), key
            built[key] = callback
    assert isinstance(built["last"], ModelCheckpoint) and built["last"].dirpath == str(tmp_path / "run" / "checkpoints")


def test_loggers_instantiate_or_skip_when_optional_package_missing(compose, tmp_path):
    from tasks.train import build_loggers

    for name in options("logger"):
        cfg = compose(f"logger={name}")
        loggers = build_loggers(cfg.logger)
        missing_tb = not any(importlib.util.find_spec(m) for m in ("tensorboard", "tensorboardX"))
        expected = len(cfg.logger) - int("tensorboard" in cfg.logger and missing_tb)
        assert len(loggers) == expected


GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
# the values a user must give before these options validate (their YAML leaves them unset on purpose)
USER_VALUES = {"data/folders": ["data.root={tmp}"], "validation/folders": ["validation.root={tmp}"],
               "experiment/finetune": ["init_from=x.ckpt"],
               "ensemble/demo_pair": ["ensemble.members.0.checkpoint=a.pt", "ensemble.members.1.checkpoint=b.pt"]}


def task_of(group: str) -> list[str]:
    """`task=<name>` for a group that only some task files pull in (photo, ensemble); nothing for the others."""
    for path in sorted((CONF / "task").glob("*.yaml")):
        defaults = OmegaConf.to_container(OmegaConf.load(path)).get("defaults", [])
        if any(f"/{group}" in entry for entry in defaults if isinstance(entry, dict)):
            return [f"task={path.stem}"]
    return []


def own_values(path: Path, group: str) -> dict[str, object]:
    """Dotted key -> value of what an option file sets itself (not its defaults list, interpolations or ???)."""
    raw = OmegaConf.to_container(OmegaConf.load(path))
    raw.pop("defaults", None)
    prefix = "" if path.read_text().startswith("# @package _global_") else f"{group}."
    flat, todo = {}, [(prefix, raw)]
    while todo:
        base, node = todo.pop()
        for key, value in node.items():
            if isinstance(value, dict):
                todo.append((f"{base}{key}.", value))
            elif not (isinstance(value, str) and ("${" in value or value == "???")):
                flat[f"{base}{key}"] = value
    return flat


@pytest.mark.parametrize(("group", "name"), [(g, n) for g in GROUPS for n in options(g)])
def test_every_group_option_composes_validates_and_keeps_its_values(compose, tmp_path, group, name):
    user = [v.format(tmp=tmp_path) for v in USER_VALUES.get(f"{group}/{name}", [])]
    cfg = compose(*task_of(group), f"{group}={name}", *user)
    validate_config(cfg)
    given = {v.split("=")[0] for v in user}
    expected = {k: v for k, v in own_values(CONF / group / f"{name}.yaml", group).items()
                if not any(g == k or g.startswith(f"{k}.") for g in given)  # a list holding a user value
                and k.split(".")[0] in cfg}  # the hydra node is not part of the run's config
    composed = {k: OmegaConf.select(cfg, k, default="<absent>") for k in expected}
    assert {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in composed.items()} == expected


def test_optim_milestones_and_warmup_from_overrides(compose, tmp_path):
    cfg = compose("optim.milestones=[6,9]", "optim.warmup_epochs=0.5", "optim.lr=0.2")
    assert list(cfg.optim.milestones) == [6, 9] and cfg.optim.warmup_epochs == 0.5 and cfg.optim.lr == 0.2


def test_typo_key_is_rejected_with_its_name(compose, tmp_path):
    with pytest.raises(ConfigCompositionException) as err:
        compose("trainer.max_epoch=3")
    assert "max_epoch" in str(err.value)


def test_wrong_type_is_rejected_with_key_and_value(compose, tmp_path):
    with pytest.raises(ConfigCompositionException) as err:
        compose("trainer.max_epochs=abc")
    text = f"{err.value} {err.value.__cause__}"
    assert "max_epochs" in text and "abc" in text


def test_wrong_top_level_type_and_unknown_task(compose, tmp_path):
    with pytest.raises(ValueError, match="seed"):
        validate_config(compose("seed=abc"))
    with pytest.raises(MissingConfigException, match="task/trian") as err:  # Hydra lists conf/task/*.yaml
        compose("task=trian")
    assert all(name in str(err.value) for name in options("task"))


def test_cli_errors_are_readable():
    """Through main.py: one short message naming the key, no traceback."""
    for override, key in (("optim.lrr=0.1", "lrr"), ("data.batch_size=big", "batch_size")):
        out = subprocess.run([sys.executable, "main.py", override], cwd=REPO, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode != 0
        assert key in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_sweep_with_ddp_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "main.py", "-m", "debug=smoke", "trainer=ddp_cpu",
                          f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=REPO, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode != 0 and "ddp_spawn" in out.stderr and "submitit" in out.stderr
