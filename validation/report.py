"""How results are summarised and shown: the one averages function, markdown tables, ROC plots.

Averages (docs/evaluation.md section 6): `val/hq_avg` is the mean of the HQ verification accuracies present;
`val/all_avg` (QGFace's "All Avg.") the mean of SCface d1, d2, d3, TinyFace rank-1, IJB-B TAR@FAR=1e-4 and HQ avg,
reported only when all six exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from common import atomic

ALL_AVG_KEYS = ("scface/d1", "scface/d2", "scface/d3", "tinyface/rank_1", "ijbb/tar_far_1e-4", "val/hq_avg")
_HQ_KEY = re.compile(r"^val/(.+)_acc$")  # what `bin_pairs` sets report
ROC_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def averages(metrics: dict, hq_keys=None) -> dict[str, float]:
    """{'val/hq_avg', 'val/all_avg'} for what `metrics` allows; values already present are kept, not recomputed.

    hq_keys: the accuracies that make the HQ average (a suite passes its own); default every `val/<set>_acc`.
    """
    out: dict[str, float] = {}
    hq = metrics.get("val/hq_avg")
    if hq is None:
        keys = [k for k in metrics if _HQ_KEY.match(k)] if hq_keys is None else [k for k in hq_keys if k in metrics]
        if keys:
            hq = out["val/hq_avg"] = float(np.mean([metrics[k] for k in keys]))
    if "val/all_avg" not in metrics:
        values = {**metrics, "val/hq_avg": hq}
        if all(values.get(k) is not None for k in ALL_AVG_KEYS):
            out["val/all_avg"] = float(np.mean([values[k] for k in ALL_AVG_KEYS]))
    return out


def markdown_table(header: list[str], rows: list[list], floatfmt: str = ".2f") -> str:
    """A markdown table; floats formatted with `floatfmt`, None shown as '-'."""

    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, (float, np.floating)):
            return format(float(v), floatfmt)
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def metrics_markdown(metrics: dict) -> str:
    """Every metric as `| metric | value |`, sorted by name, four decimals (the run dir's metrics.md)."""
    return markdown_table(["metric", "value"], [[k, float(v)] for k, v in sorted(metrics.items())], ".4f")


def headline_table(metrics: dict, columns: list[tuple[str, str]]) -> str:
    """One-row markdown table of the (key, title) columns present in `metrics`."""
    cols = [(k, title) for k, title in columns if k in metrics]
    if not cols:
        return "(no validation metrics)"
    return markdown_table([t for _, t in cols], [[float(metrics[k]) for k, _ in cols]]).rstrip("\n")


def save_roc_png(curves: dict, path, title: str = "1:1 verification ROC", fars=ROC_FARS) -> Path:
    """Plot ROC curves {label: (fpr, tpr)} on a log FAR axis into a PNG (matplotlib Agg, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for label, (fpr, tpr) in curves.items():
        ax.plot(np.clip(fpr, min(fars) / 10, 1.0), np.asarray(tpr) * 100, label=label)
    ax.set(xscale="log", xlim=(min(fars), 1.0), ylim=(0, 100), xlabel="FAR", ylabel="TAR (%)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    path = Path(path)
    with atomic.atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    with atomic.atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def save_det_png(curves: dict, path, title: str = "DET") -> Path:
    """DET curves {label: (far, tar)}: false rejection rate against false acceptance rate, both on log axes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    floor = 1e-3  # percent: a rate of zero (a perfect separation) is drawn on the floor of the log axes
    for label, (far, tar) in curves.items():
        far, frr = np.asarray(far, float) * 100, (1.0 - np.asarray(tar, float)) * 100
        ax.plot(np.clip(far, floor, 100), np.clip(frr, floor, 100), label=label)
    ax.set(xscale="log", yscale="log", xlim=(floor, 100), ylim=(floor, 100), xlabel="false acceptance rate (%)",
           ylabel="false rejection rate (%)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    return _save(fig, path)


def save_score_histograms_png(histograms: dict, path, title: str = "scores") -> Path:
    """One panel per label {label: (genuine scores, impostor scores, threshold or None)}, threshold as a line."""
    plt = _pyplot()
    n = max(1, len(histograms))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.0), squeeze=False)
    for ax, (label, (genuine, impostor, threshold)) in zip(axes[0], histograms.items()):
        bins = np.linspace(-1, 1, 81)
        ax.hist(impostor, bins=bins, alpha=0.6, density=True, label=f"impostor ({len(impostor)})")
        ax.hist(genuine, bins=bins, alpha=0.6, density=True, label=f"genuine ({len(genuine)})")
        if threshold is not None and np.isfinite(threshold):
            ax.axvline(threshold, color="k", linestyle="--", linewidth=1, label=f"threshold {threshold:.2f}")
        ax.set(title=label, xlabel="cosine similarity")
        ax.legend(fontsize="x-small")
    fig.suptitle(title)
    return _save(fig, path)
