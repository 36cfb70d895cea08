"""Entry point: `python main.py [group=option ...] [key=value ...]`.

No arguments = the CPU demo (synthetic benchmark, tiny backbone, AdaFace). `task=` picks what to run:
train (default), evaluate, calibrate, export, embed, compare, enroll, identify. See conf/config.yaml and the README.
"""

import importlib
import logging

import hydra
from omegaconf import DictConfig, OmegaConf

import tasks  # noqa: F401  (registers the config schemas before Hydra composes)
from tasks.config_schema import validate_config

log = logging.getLogger(__name__)

# task=<name> -> (module, function taking the resolved config); imported lazily so each task loads only what it needs
TASK_RUNNERS = {
    "train": ("tasks.train", "run_train"),
    "evaluate": ("tasks.evaluate", "run_evaluate"),
    "calibrate": ("tasks.calibrate", "run_calibrate"),
    "export": ("tasks.export", "run_export"),
    "embed": ("tasks.embed", "run_embed_task"),
    "compare": ("tasks.compare", "run_compare_task"),
    "enroll": ("tasks.enroll", "run_enroll_task"),
    "identify": ("tasks.identify", "run_identify_task"),
}


def route_lightning_logs_to_hydra() -> None:
    """Lightning installs its own handlers at import (before Hydra configures logging), so its lines would miss the
    job log; hand them to the root logger instead (only one handler, or every line prints twice)."""
    for name in ("pytorch_lightning", "lightning_fabric"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)  # DDP ranks and workers have no Hydra state: resolve ${hydra:...} once, here
    validate_config(cfg)
    route_lightning_logs_to_hydra()
    if cfg.print_config:
        print(OmegaConf.to_yaml(cfg))
    if cfg.num_threads:
        import torch

        torch.set_num_threads(cfg.num_threads)

    module_name, function_name = TASK_RUNNERS[cfg.task]
    getattr(importlib.import_module(module_name), function_name)(cfg)


if __name__ == "__main__":
    main()
