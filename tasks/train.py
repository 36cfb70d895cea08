"""task=train: data -> module -> Trainer.fit -> metrics.json, reading top to bottom."""

import logging
import time
from pathlib import Path

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

from dataset.datamodule import FaceDataModule, resolve_training_data, resolve_validation_root
from models.lit_module import FaceRecognitionModule
from tasks.run_info import write_metrics, write_run_info
from validation.report import metrics_markdown
from validation.suite import ValidationSuite

log = logging.getLogger(__name__)


def build_callbacks(nodes, validating: bool, logging_enabled: bool = True) -> list:
    """The `callbacks` node's callbacks (`_target_`: Lightning objects), minus those that cannot work in this run (a
    monitor without validation, an LR monitor without a logger)."""
    callbacks = []
    for name, node in (nodes or {}).items():
        callback = instantiate(node)
        if isinstance(callback, ModelCheckpoint) and callback.monitor and not validating:
            log.info("callbacks.%s dropped: it monitors %s but no validation set is enabled", name, callback.monitor)
            continue
        if isinstance(callback, LearningRateMonitor) and not logging_enabled:
            continue
        callbacks.append(callback)
    return callbacks


def build_loggers(nodes) -> list:
    """The `logger` node's loggers; one whose package is not installed (tensorboard) is skipped with a warning."""
    loggers = []
    for name, node in (nodes or {}).items():
        try:
            loggers.append(instantiate(node))
        except InstantiationException as err:
            if not isinstance(err.__cause__, ImportError):
                raise
            log.warning("logger.%s skipped (optional package missing): %s", name, err.__cause__)
    return loggers


def trainer_kwargs(trainer: DictConfig) -> dict:
    """pl.Trainer arguments from the `trainer` node."""
    kwargs = OmegaConf.to_container(trainer, resolve=True)
    if isinstance(kwargs.get("strategy"), dict):  # a `_target_` node, e.g. DDPStrategy(broadcast_buffers=False)
        kwargs["strategy"] = instantiate(kwargs["strategy"])
    return kwargs


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """`last`: resume from <ckpt_dir>/last.ckpt and fail clearly when absent; `auto`: resume if present (requeue
    scripts); a path: that file; null: fresh start (SLURM hpc_ckpt_* in the run dir still resume, Lightning's rule)."""
    wanted = cfg.ckpt_path
    if wanted is None:
        return None
    if wanted in ("last", "auto"):
        ckpt_dir = Path(cfg.paths.ckpt_dir)
        last = ckpt_dir / "last.ckpt"
        candidates = [p for p in [last, *ckpt_dir.glob("step*.ckpt")] if p.is_file()]
        if candidates:
            newest = max(candidates, key=lambda p: p.stat().st_mtime)  # a step checkpoint may be newer (preemption)
            log.info("resuming from %s", newest)
            return str(newest)
        if wanted == "auto":
            log.info("ckpt_path=auto: nothing to resume in %s, starting fresh", last.parent)
            return None
        raise FileNotFoundError(
            f"ckpt_path=last: nothing to resume, {last} does not exist. Resuming needs the same stable run dir as the "
            f"interrupted run: pass the same run_name=<name> (outputs/runs/<name>) or hydra.run.dir=<dir>, or give "
            f"ckpt_path=<path/to/file.ckpt>; use ckpt_path=auto to start fresh when there is no checkpoint.")
    if not Path(wanted).is_file():
        raise FileNotFoundError(f"ckpt_path={wanted}: no such checkpoint file")
    return str(wanted)


def check_sweep_strategy(cfg: DictConfig) -> None:
    """`-m` with Lightning's `ddp` on Hydra's basic launcher is unsupported (children start their own sweeps and a
    second DDP trainer in the same process hangs): refuse it with the alternatives."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    strategy = cfg.trainer.strategy
    name = str(strategy.get("_target_", "") if isinstance(strategy, DictConfig) else strategy).lower()
    basic = "BasicLauncher" in str(hydra_cfg.launcher.get("_target_", ""))
    if hydra_cfg.mode == RunMode.MULTIRUN and basic and "ddp" in name and "spawn" not in name:
        raise ValueError("a -m sweep cannot use trainer.strategy=ddp on Hydra's basic launcher: use one device per "
                         "job, trainer.strategy=ddp_spawn, or hydra/launcher=submitit_slurm with "
                         "hydra.launcher.tasks_per_node=<trainer.devices> (see the README)")


def build_suite(cfg: DictConfig) -> ValidationSuite | None:
    """The configured validation sets (None when none is enabled); the synthetic build provides the root when
    validation.root is null."""
    if not cfg.validation.sets:
        return None
    return ValidationSuite.from_config(cfg.validation, resolve_validation_root(cfg.validation, cfg.paths.cache_dir))


def build_module(cfg: DictConfig, num_classes: int | None) -> FaceRecognitionModule:
    """The LightningModule from its own nodes (backbone, head, objective, optim) and the run scalars it needs;
    num_classes None = evaluation only."""
    c = OmegaConf.to_container(cfg, resolve=True)
    training = {"head": c["head"], "objective": c["objective"], "optim": c["optim"]} if num_classes else {}
    return FaceRecognitionModule(c["backbone"], **training, num_classes=num_classes, views=c["augmentation"]["views"],
                                 channels_last=c["channels_last"], compile=c["compile"], seed=c["seed"])


def run_train(cfg: DictConfig) -> dict[str, float]:
    started = time.time()
    check_sweep_strategy(cfg)
    pl.seed_everything(cfg.seed, workers=False)  # workers seeded per rank by dataset.datamodule.seed_worker
    ckpt_path = resolve_ckpt_path(cfg)
    training = resolve_training_data(cfg.data, cfg.paths.cache_dir)
    suite = build_suite(cfg)

    module = build_module(cfg, training.num_classes)
    module.attach_suite(suite)
    datamodule = FaceDataModule(cfg.data, cfg.augmentation, training, suite.datasets() if suite is not None else ())
    loggers = build_loggers(cfg.get("logger"))
    trainer = pl.Trainer(**trainer_kwargs(cfg.trainer),
                         callbacks=build_callbacks(cfg.get("callbacks"), suite is not None, bool(loggers)),
                         logger=loggers or False)
    out_dir = Path(cfg.paths.output_dir)
    if trainer.is_global_zero:
        write_run_info(cfg, out_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    metrics = dict(module.last_val_metrics)
    loss = trainer.callback_metrics.get("train/loss")
    if loss is not None:
        metrics["train/loss"] = float(loss)
    metrics["train/global_step"] = float(trainer.global_step)
    metrics["train/epochs"] = float(trainer.current_epoch)
    metrics["train/wall_s"] = round(time.time() - started, 1)
    if trainer.is_global_zero:
        path = write_metrics(metrics, out_dir)
        if suite is not None and module.last_val_metrics:
            print(f"\nfinal results ({cfg.backbone.name}, {cfg.head.name}, data={cfg.data.name}):\n"
                  f"{suite.summary(module.last_val_metrics)}")
        print(f"run dir: {out_dir}\nmetrics: {path}  (train {metrics['train/wall_s']:.0f} s, "
              f"{trainer.global_step} steps)")
        (out_dir / "metrics.md").write_text(metrics_markdown(metrics))
    return metrics
