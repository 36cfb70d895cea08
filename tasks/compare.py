"""task=compare: cosine similarity between face photos (the library is `inference.compare`).

    python main.py task=compare 'compare.paths_a=[a.jpg,b.jpg]' checkpoint=... backbone=ir_50
        [compare.paths_b=...] [compare.thresholds=thresholds.json compare.far=1e-3] [output_dir=...]
"""

from omegaconf import DictConfig, OmegaConf

from inference.compare import run_compare
from models import backbone_arguments


def run(cfg: DictConfig) -> dict:
    c = OmegaConf.to_container(cfg.compare, resolve=True)
    if c["paths_a"] is None:
        raise ValueError("task=compare needs compare.paths_a=<folder/image or [list]> (and optionally paths_b)")
    p = cfg.photo
    return run_compare(c["paths_a"], c["paths_b"], cfg.output_dir, checkpoint=cfg.checkpoint, arch=cfg.backbone.name,
                       batch_size=p.batch_size, mtcnn_weights=p.mtcnn_weights, align=p.align, device=p.device,
                       backbone_kwargs=backbone_arguments(cfg.backbone), thresholds=c["thresholds"], far=c["far"],
                       protocol=c["protocol"])
