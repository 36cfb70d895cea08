"""The one reader of a run's `metrics.json`: a flat dict metric name -> number, written by tasks.run_info."""

from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsFileError(ValueError):
    """A run dir whose metrics.json is absent, unreadable or empty; the message says which."""


def read_metrics(run_dir: str | Path) -> dict[str, float]:
    """`<run_dir>/metrics.json` as name -> float (non-numeric entries are not metrics and are left out)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise MetricsFileError("no metrics.json")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MetricsFileError(f"unreadable metrics.json ({e})") from e
    if not isinstance(data, dict):
        raise MetricsFileError("metrics.json is not a name -> value object")
    metrics = {k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not metrics:
        raise MetricsFileError("empty metrics.json")
    bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
    if bad:
        raise MetricsFileError(f"metrics.json holds non-finite values for {bad}")
    return metrics
