"""Entry point: `python main.py [group=option ...] [key=value ...]`.

No arguments = the CPU demo (synthetic benchmark, tiny backbone, AdaFace). `task=<name>` picks what to run: one of
conf/task/*.yaml (train by default), run by `tasks.<name>.run(cfg)`. See conf/config.yaml.
"""

import importlib
import logging

import hydra
from omegaconf import DictConfig, OmegaConf

import tasks  # noqa: F401  (registers the config schemas before Hydra composes)
from tasks.config import validate_config

log = logging.getLogger(__name__)


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

    # imported lazily, so each task loads only what it needs; validate_config checked the name (tasks.schemas.TASKS)
    importlib.import_module(f"tasks.{cfg.task}").run(cfg)


if __name__ == "__main__":
    main()
