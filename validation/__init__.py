"""Evaluation metrics and validation sets for face recognition.

The metric modules (verification, fusion, identification, ijb, summarize) are plain numpy and import without torch;
`validation.sets` and `validation.suite.ValidationSuite.datasets()` import torch lazily.
"""

HQ_SETS = ("lfw", "cfp_fp", "agedb_30", "calfw", "cplfw")
LQ_SETS = ("tinyface", "scface", "ijbb", "ijbc")
ALL_SETS = HQ_SETS + LQ_SETS

__all__ = ["HQ_SETS", "LQ_SETS", "ALL_SETS"]
