"""task=identify: the top-k gallery identities of each probe, with an open-set decision at a target FPIR.

    python main.py task=identify identify.probes=photos/ identify.gallery=gallery.npz checkpoint=model.onnx
        [identify.nonmated=strangers/] [identify.thresholds=thresholds.json] [identify.fpir=0.01] [identify.k=5]
        [output_dir=...]

The library is `inference.identify.run_identify` (docs/deployment.md, "1:N identification").
"""

from omegaconf import DictConfig

from inference.identify import run_identify
from models import backbone_arguments


def run(cfg: DictConfig) -> dict:
    i, p = cfg.identify, cfg.photo
    if i.probes is None or i.gallery is None:
        raise ValueError("task=identify needs identify.probes=<photos or a task=embed folder> and "
                         "identify.gallery=<gallery file of task=enroll>")
    return run_identify(i.probes, i.gallery, cfg.output_dir, checkpoint=cfg.checkpoint, arch=cfg.backbone.name,
                        backbone_kwargs=backbone_arguments(cfg.backbone), k=i.k, fpir=i.fpir, nonmated=i.nonmated,
                        thresholds=i.thresholds, protocol=i.protocol, search=i.search, align=p.align,
                        mtcnn_weights=p.mtcnn_weights, device=p.device, batch_size=p.batch_size)
