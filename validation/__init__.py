"""Evaluation: validation protocols (plug-ins), metric maths, flip fusion, the suite, reports and the summarizer.

The metric modules (verification, flip_fusion, score_fusion, identification, ijb, report, summarize) and the
protocol registry are plain numpy and import without torch; datasets (`ValidationSuite.datasets()`) and
`validation.gather` need torch.
"""

from validation.protocols import HQ_SETS, STANDARD_SETS

__all__ = ["HQ_SETS", "STANDARD_SETS"]
