"""task=train: data -> module -> Trainer.fit -> metrics.json, reading top to bottom."""

import logging
import time
import warnings
from collections.abc import Mapping
from pathlib import Path

import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from common import atomic
from common.run_lock import RunDirLock, is_launching_process
from dataset.datamodule import FaceDataModule, resolve_training_data, resolve_validation_root
from tasks.run_info import existing_metrics, write_metrics, write_run_info
from training.checkpoint_io import (
    AtomicCheckpointIO,
    checkpoint_step,
    newest_valid_checkpoint,
    verify_checkpoint,
)
from training.lit_module import FaceRecognitionModule
from training.run_logs import make_csv_logger_resumable
from validation.report import metrics_markdown
from validation.suite import ValidationSuite

log = logging.getLogger(__name__)


def build_callbacks(nodes, validating: bool, logging_enabled: bool = True) -> list:
    """The `callbacks` node's callbacks (`_target_`: Lightning objects), minus those that cannot work in this run (a
    monitor without validation, an LR monitor without a logger)."""
    callbacks = []
    for name, node in (nodes or {}).items():
        if not isinstance(node, Mapping) or "_target_" not in node:
            # e.g. `debug=smoke callbacks=none`: the debug preset tunes `callbacks.steps`, which this group lacks
            log.warning("callbacks.%s skipped: it has no _target_ (settings for a callback the chosen callbacks "
                        "group does not define)", name)
            continue
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
    """`last` / `auto`: the newest checkpoint of this run dir that verifies (last.ckpt, step and best checkpoints;
    a torn newer one is skipped, saying why); `last` fails clearly when there is none, `auto` starts fresh. A path:
    that file, verified. null: fresh start."""
    wanted = cfg.ckpt_path
    if wanted is None:
        return None
    if wanted in ("last", "auto"):
        ckpt_dir = Path(cfg.paths.ckpt_dir)
        chosen, notes = newest_valid_checkpoint(ckpt_dir)
        for note in notes:
            log.warning("ckpt_path=%s: %s", wanted, note)
        if chosen is not None:
            log.info("resuming from %s", chosen)
            return str(chosen)
        if wanted == "auto":
            log.info("ckpt_path=auto: nothing to resume in %s, starting fresh", ckpt_dir)
            return None
        raise FileNotFoundError(
            f"ckpt_path=last: nothing to resume, {ckpt_dir} holds no complete checkpoint"
            f"{' (' + '; '.join(notes) + ')' if notes else ''}. Resuming needs the same stable run dir as the "
            f"interrupted run: pass the same run_name=<name> (outputs/runs/<name>) or hydra.run.dir=<dir>, or give "
            f"ckpt_path=<path/to/file.ckpt>; use ckpt_path=auto to start fresh when there is no checkpoint.")
    if not Path(wanted).is_file():
        raise FileNotFoundError(f"ckpt_path={wanted}: no such checkpoint file")
    problem = verify_checkpoint(wanted)
    if problem:
        raise ValueError(f"ckpt_path={wanted}: {problem}")
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
                         "hydra.launcher.tasks_per_node=<trainer.devices> (docs/training.md, \"Multi-GPU, multi-node, "
                         "SLURM, sweeps\")")


def build_suite(cfg: DictConfig) -> ValidationSuite | None:
    """The configured validation sets (None when none is enabled); the synthetic build provides the root when
    validation.root is null."""
    if not cfg.validation.sets:
        return None
    return ValidationSuite.from_config(cfg.validation, resolve_validation_root(cfg.validation, cfg.paths.cache_dir))


def warn_overlap(cfg: DictConfig, suite) -> list[str]:
    """Warn when the training folders (data=folders) and an evaluation folder set share identities or images."""
    if suite is None or not cfg.data.get("pack_folders") or cfg.data.root is None:
        return []
    from validation.protocols.folders import FoldersProtocol, overlap

    problems = []
    for protocol in suite.protocols:
        if isinstance(protocol, FoldersProtocol):
            for problem in overlap(cfg.data.root, protocol.path):
                message = (f"data.root={cfg.data.root} and validation set {protocol.name!r} ({protocol.path}) are not "
                           f"disjoint: {problem}; evaluation identities must not be trained on")
                log.warning(message)
                problems.append(message)
    return problems


def build_module(cfg: DictConfig, num_classes: int | None) -> FaceRecognitionModule:
    """The LightningModule from its own nodes (backbone, head, objective, optim) and the run scalars it needs;
    num_classes None = evaluation only."""
    c = OmegaConf.to_container(cfg, resolve=True)
    training = {"head": c["head"], "objective": c["objective"], "optim": c["optim"]} if num_classes else {}
    return FaceRecognitionModule(c["backbone"], **training, num_classes=num_classes, views=c["augmentation"]["views"],
                                 channels_last=c["channels_last"], compile=c["compile"], seed=c["seed"],
                                 nonfinite_loss=c.get("nonfinite_loss", "stop"),
                                 finetune=c.get("finetune") if num_classes else None)


def load_init(cfg: DictConfig, resuming: bool) -> dict | None:
    """The backbone state of `init_from` (every format `models.load_pretrained` reads, strictly), read into a
    backbone of `cfg.backbone` before any data is read, so a wrong file fails first. None without init_from, or
    when resuming: a checkpoint of the run dir wins over init_from (logged)."""
    source = cfg.get("init_from")
    if not source:
        return None
    if resuming:
        log.info("init_from=%s ignored: resuming this run from its own checkpoint", source)
        return None
    from models import build_backbone_from_node, load_pretrained
    from models.pretrained import CheckpointError

    if not Path(source).is_file():
        raise FileNotFoundError(f"init_from={source}: no such file")
    backbone = build_backbone_from_node(OmegaConf.to_container(cfg.backbone, resolve=True))
    try:
        load_pretrained(backbone, source)
    except CheckpointError as err:
        raise CheckpointError(f"init_from={source}: {err}") from None
    except Exception as err:  # not a checkpoint at all: name the key and the file
        raise CheckpointError(f"init_from={source}: not a checkpoint models.load_pretrained can read "
                              f"({type(err).__name__}: {err})") from None
    log.info("init_from=%s: pretrained %s backbone loaded (new head, step 0)", source, cfg.backbone.name)
    return backbone.state_dict()


def apply_init(cfg: DictConfig, module: FaceRecognitionModule, state: dict, training) -> None:
    """Pretrained weights into the module's backbone, then the head's class centres (weight imprinting or random)."""
    module.model.load_state_dict(state)
    if module.finetune["head_init"] == "imprint":
        from training.finetune import imprint_head

        imprint_head(module.model, module.head, training.dataset, int(module.finetune["imprint_batch_size"]),
                     channels_last=module.channels_last)


def _already_finished(out_dir: Path, checkpoint_metrics: dict, step: int, trainer) -> dict[str, float]:
    """Resuming a finished run trains nothing; its results stay, completed from the checkpoint if a kill came
    between the last checkpoint and metrics.json."""
    existing = existing_metrics(out_dir)
    missing = {k: v for k, v in checkpoint_metrics.items() if k not in existing}
    if not trainer.is_global_zero:
        return existing
    if missing:
        _, existing = write_metrics(missing, out_dir)
        atomic.write_text(out_dir / "metrics.md", metrics_markdown(existing))
        print(f"run dir {out_dir}: the run had finished at step {step}; its results were missing from metrics.json "
              "and were restored from the last checkpoint")
    else:
        print(f"run dir {out_dir}: the run already finished at step {step}; nothing was trained and its results are "
              "unchanged")
    return existing


def run(cfg: DictConfig) -> dict[str, float]:
    """Train; the results (metrics.json, metrics.md, run info, validation artifacts) go to the run dir
    (`output_dir`, which task=train keeps equal to it), the checkpoints to paths.ckpt_dir. The lock guards the run
    dir."""
    check_sweep_strategy(cfg)
    out_dir = Path(cfg.output_dir)
    if not is_launching_process():  # a rank Lightning launched into this run dir: rank 0 holds the lock
        return _train(cfg, out_dir)
    with RunDirLock(Path(cfg.paths.output_dir), stale_after_s=cfg.lock.stale_after_s,
                    heartbeat_s=cfg.lock.heartbeat_s):
        return _train(cfg, out_dir)


def _train(cfg: DictConfig, out_dir: Path) -> dict[str, float]:
    started = time.time()
    pl.seed_everything(cfg.seed, workers=False)  # training order and augmentations: dataset.sampling
    ckpt_path = resolve_ckpt_path(cfg)
    resume_step = checkpoint_step(ckpt_path)
    init_state = load_init(cfg, resuming=ckpt_path is not None)
    training = resolve_training_data(cfg.data, cfg.paths.cache_dir)
    suite = build_suite(cfg)
    warn_overlap(cfg, suite)

    module = build_module(cfg, training.num_classes)
    if init_state is not None:
        apply_init(cfg, module, init_state, training)
    module.attach_suite(suite)
    datamodule = FaceDataModule(cfg.data, cfg.augmentation, training, suite.datasets() if suite is not None else (),
                                seed=cfg.seed)
    loggers = [make_csv_logger_resumable(lg, resume_step) if isinstance(lg, CSVLogger) else lg
               for lg in build_loggers(cfg.get("logger"))]
    steps_node = (cfg.get("callbacks") or {}).get("steps") or {}
    keep_steps = steps_node.get("save_top_k") if steps_node.get("save_top_k", -1) > 0 else None
    trainer = pl.Trainer(**trainer_kwargs(cfg.trainer), plugins=[AtomicCheckpointIO(keep_steps)],
                         callbacks=build_callbacks(cfg.get("callbacks"), suite is not None, bool(loggers)),
                         logger=loggers or False)
    if trainer.is_global_zero:
        write_run_info(cfg, out_dir)
    with warnings.catch_warnings():  # the datamodule resumes mid-epoch itself (dataset.sampling)
        warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    if resume_step is not None and trainer.global_step == resume_step:
        if suite is None or module.last_val_step == resume_step:
            return _already_finished(out_dir, module.last_val_metrics, resume_step, trainer)
        # the checkpoint was written after the last training step but before that epoch's validation (a step
        # checkpoint on the final batch): validate its weights, as the uninterrupted run did next
        trainer.validate(module, datamodule=datamodule)
    metrics = dict(module.last_val_metrics)
    loss = trainer.callback_metrics.get("train/loss")
    if loss is not None:
        metrics["train/loss"] = float(loss)
    metrics["train/global_step"] = float(trainer.global_step)
    metrics["train/epochs"] = float(trainer.current_epoch)
    previous_wall = existing_metrics(out_dir).get("train/wall_s", 0.0) if resume_step is not None else 0.0
    metrics["train/wall_s"] = round(previous_wall + time.time() - started, 1)  # summed over resumed sessions
    if trainer.is_global_zero:
        path, metrics = write_metrics(metrics, out_dir)
        if suite is not None and module.last_val_metrics:
            print(f"\nfinal results ({cfg.backbone.name}, {cfg.head.name}, data={cfg.data.name}):\n"
                  f"{suite.summary(module.last_val_metrics)}")
        print(f"run dir: {out_dir}\nmetrics: {path}  (train {metrics['train/wall_s']:.0f} s, "
              f"{trainer.global_step} steps)")
        atomic.write_text(out_dir / "metrics.md", metrics_markdown(metrics))
        if suite is not None and module.last_val_metrics:
            suite.write_artifacts(out_dir)
    return metrics
