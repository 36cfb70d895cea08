"""Moved to `alignment.align`; this name keeps `dataset.align.align_face` and friends importable."""

from alignment.align import ARCFACE_TEMPLATE, align_face, estimate_similarity, scface_template_4pt, template_for

__all__ = ["ARCFACE_TEMPLATE", "align_face", "estimate_similarity", "scface_template_4pt", "template_for"]
