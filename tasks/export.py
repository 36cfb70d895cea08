"""task=export: `python main.py task=export checkpoint=PATH backbone=ir_50 [export.output=model.onnx]`.

Loads the backbone weights (models.load_pretrained) and writes an ONNX model with models.export.export_onnx.
"""

import logging
from pathlib import Path

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def run_export(cfg: DictConfig) -> Path:
    from models import build_backbone_from_node, load_pretrained
    from models.export import export_onnx

    if cfg.checkpoint is None:
        raise ValueError("task=export needs checkpoint=<path> (ours, an AdaFace .ckpt or an InsightFace .pth)")
    model = build_backbone_from_node(cfg.backbone)
    load_pretrained(model, cfg.checkpoint)
    model.eval()
    output = Path(cfg.export.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    result = export_onnx(model, output, opset=cfg.export.opset, check=cfg.export.check)
    print(f"exported {cfg.backbone.name} from {cfg.checkpoint} -> {output} (max |onnx - torch| "
          f"{result.get('max_abs_diff')})")
    return output
