"""task=export: `python main.py task=export checkpoint=PATH backbone=ir_50 [export.output=model.onnx]`.

Loads the backbone weights (models.load_pretrained) and writes an ONNX model (default `<output_dir>/model.onnx`) with
deploy.export.export_artifacts; `export.int8=true export.calibration=<.rec or folder>` and `export.fp16=true` add the
quantized / half versions (docs/deployment.md, "Quantized and half-precision ONNX").
"""

import logging
from pathlib import Path

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> Path:
    from deploy.export import export_artifacts, print_artifacts
    from models import build_backbone_from_node, load_pretrained

    if cfg.checkpoint is None:
        raise ValueError("task=export needs checkpoint=<path> (ours, an AdaFace .ckpt or an InsightFace .pth)")
    model = build_backbone_from_node(cfg.backbone)
    load_pretrained(model, cfg.checkpoint)
    model.eval()
    output = Path(cfg.export.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    e = cfg.export
    results = export_artifacts(model, output, opset=e.opset, check=e.check, int8=e.int8, fp16=e.fp16,
                               calibration=e.calibration, calibration_count=e.calibration_count,
                               check_count=e.check_count, min_cosine=e.min_cosine)
    print(f"exported {cfg.backbone.name} from {cfg.checkpoint} -> {output} (max |onnx - torch| "
          f"{results['fp32'].get('max_abs_diff')})")
    print_artifacts(results)
    return output
