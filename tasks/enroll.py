"""task=enroll: add identity folders (`<root>/<identity>/<images>`) or a task=embed output folder to a gallery file.

    python main.py task=enroll enroll.input=people/ enroll.gallery=gallery.npz checkpoint=model.onnx
        [enroll.thresholds=thresholds.json] [enroll.index=auto|exact|ivf]

The library is `inference.identify.run_enroll`; the file format is in docs/formats.md section 6.
"""

from omegaconf import DictConfig

from inference.identify import run_enroll
from models import backbone_arguments


def run_enroll_task(cfg: DictConfig) -> dict:
    e = cfg.enroll
    if e.input is None:
        raise ValueError("task=enroll needs enroll.input=<identity folders or a task=embed output folder>")
    return run_enroll(e.input, e.gallery, checkpoint=cfg.checkpoint, arch=cfg.backbone.name,
                      backbone_kwargs=backbone_arguments(cfg.backbone), thresholds=e.thresholds, align=e.align,
                      mtcnn_weights=e.mtcnn_weights, device=e.device, batch_size=e.batch_size, index=e.index,
                      ivf_min_size=e.ivf_min_size, target_recall=e.target_recall, nlist=e.nlist,
                      stale_after_s=cfg.lock.stale_after_s, heartbeat_s=cfg.lock.heartbeat_s)
