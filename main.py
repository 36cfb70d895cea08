"""Entry point: `python main.py [group=option ...] [key=value ...]`.

No arguments = the CPU demo (synthetic benchmark, tiny backbone, AdaFace). `task=` picks what to run:
train (default), evaluate, export, embed, compare. See conf/config.yaml and the README.
"""

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

import tasks  # noqa: F401  (registers the config schemas before Hydra composes)
from tasks.config_schema import validate_config

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

    if cfg.task == "train":
        from tasks.train import run_train

        run_train(cfg)
    elif cfg.task == "evaluate":
        from tasks.evaluate import run_evaluate

        run_evaluate(cfg)
    elif cfg.task == "export":
        from tasks.export import run_export

        run_export(cfg)
    elif cfg.task == "embed":
        from tasks.embed import run_embed

        e = cfg.embed
        if e.input_dir is None:
            raise ValueError("task=embed needs embed.input_dir=<folder or image>")
        run_embed(e.input_dir, e.output_dir, batch_size=e.batch_size, checkpoint=cfg.checkpoint,
                  arch=cfg.backbone.name, mtcnn_weights=e.mtcnn_weights, align=e.align, device=e.device)
    elif cfg.task == "compare":
        from tasks.compare import run_compare

        c = cfg.compare
        if c.paths_a is None:
            raise ValueError("task=compare needs compare.paths_a=<folder/image or [list]> (and optionally paths_b)")
        plain = OmegaConf.to_container(c, resolve=True)
        run_compare(plain["paths_a"], plain["paths_b"], c.output_dir, checkpoint=cfg.checkpoint,
                    arch=cfg.backbone.name, batch_size=c.batch_size, mtcnn_weights=c.mtcnn_weights, align=c.align,
                    device=c.device)


if __name__ == "__main__":
    main()
