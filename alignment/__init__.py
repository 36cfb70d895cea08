"""Face detection (MTCNN) and 5-point similarity alignment to the ArcFace 112x112 template.

The bottom layer: used by dataset preparation, the synthetic benchmark and inference; imports no other package of
the project.
"""

from alignment.align import ARCFACE_TEMPLATE, align_face, estimate_similarity, template_for

__all__ = ["ARCFACE_TEMPLATE", "align_face", "estimate_similarity", "template_for"]
