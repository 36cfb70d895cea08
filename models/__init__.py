"""Face-recognition backbones by stable name.

    model = build_backbone("ir_50")            # forward(x) -> (unit embedding [B,512], norm [B,1])
    load_pretrained(model, "adaface_ir50_ms1mv2.ckpt")
    x = preprocess(batch_uint8_bgr, model.meta)  # BGR uint8 -> normalised float in the model's colour order
"""

from models import ir, iresnet, mobilefacenet, tiny  # noqa: F401  (imports register the backbones)
from models.pretrained import load_pretrained
from models.registry import (
    BACKBONES,
    backbone_arguments,
    build_backbone,
    build_backbone_from_node,
    canonical_name,
    list_backbones,
    preprocess,
    register,
)

__all__ = ["BACKBONES", "backbone_arguments", "build_backbone", "build_backbone_from_node", "canonical_name",
           "list_backbones", "load_pretrained", "preprocess", "register"]
