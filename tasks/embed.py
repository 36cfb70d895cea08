"""task=embed: detect, align and embed every photo under a folder (the library is `inference.embedder`).

    python main.py task=embed embed.input_dir=photos/ checkpoint=adaface_ir50_ms1mv2.ckpt backbone=ir_50
        [output_dir=...] [photo.device=cuda] [photo.align=none]
"""

from omegaconf import DictConfig

from inference.embedder import run_embed
from models import backbone_arguments


def run(cfg: DictConfig) -> dict:
    if cfg.embed.input_dir is None:
        raise ValueError("task=embed needs embed.input_dir=<folder or image>")
    p = cfg.photo
    return run_embed(cfg.embed.input_dir, cfg.output_dir, batch_size=p.batch_size, checkpoint=cfg.checkpoint,
                     arch=cfg.backbone.name, mtcnn_weights=p.mtcnn_weights, align=p.align, device=p.device,
                     backbone_kwargs=backbone_arguments(cfg.backbone))
