"""Losses: margin heads by name (`build_head`, `HEADS`).

Kept light on purpose: objectives (`losses.objective`), QGFace (`losses.qgface`) and queues (`losses.queue`) are
imported explicitly by whoever needs them, never here.
"""

from losses.heads import (
    HEADS,
    AdaFaceHead,
    ArcFaceHead,
    CosFaceHead,
    SoftmaxHead,
    build_head,
    build_head_from_node,
)

__all__ = ["HEADS", "AdaFaceHead", "ArcFaceHead", "CosFaceHead", "SoftmaxHead", "build_head", "build_head_from_node"]
