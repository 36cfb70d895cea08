"""task=enroll: add identity folders (`<root>/<identity>/<images>`) or a task=embed output folder to a gallery file.

    python main.py task=enroll enroll.input=people/ checkpoint=model.onnx [enroll.gallery=gallery.npz]
        [enroll.thresholds=thresholds.json] [enroll.index=auto|exact|ivf]

The library is `inference.identify.run_enroll`; the file format is in docs/formats.md, "Gallery file
(`inference/gallery.py`, written by task=enroll)". The gallery defaults to `<output_dir>/gallery.npz`.
"""

from omegaconf import DictConfig

from inference.identify import run_enroll
from models import backbone_arguments


def run(cfg: DictConfig) -> dict:
    e, p = cfg.enroll, cfg.photo
    if e.input is None:
        raise ValueError("task=enroll needs enroll.input=<identity folders or a task=embed output folder>")
    return run_enroll(e.input, e.gallery, checkpoint=cfg.checkpoint, arch=cfg.backbone.name,
                      backbone_kwargs=backbone_arguments(cfg.backbone), thresholds=e.thresholds, align=p.align,
                      mtcnn_weights=p.mtcnn_weights, device=p.device, batch_size=p.batch_size, index=e.index,
                      ivf_min_size=e.ivf_min_size, target_recall=e.target_recall, nlist=e.nlist,
                      stale_after_s=cfg.lock.stale_after_s, heartbeat_s=cfg.lock.heartbeat_s)
