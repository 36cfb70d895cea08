"""How results are summarised and shown: the one averages function, markdown tables, ROC plots.

Averages (docs/evaluation.md, "Averages"): `val/hq_avg` is the mean of the HQ verification accuracies present;
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    """Write a matplotlib figure atomically as PNG and close it."""
    path = Path(path)
    with atomic.atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _plot(path, draw) -> Path:
    """A one-panel figure drawn by `draw(ax)`, with grid and legend, written as PNG."""
    fig, ax = _pyplot().subplots(figsize=(5.5, 4.5))
    draw(ax)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def save_roc_png(curves: dict, path, title: str = "1:1 verification ROC", fars=ROC_FARS) -> Path:
    """Plot ROC curves {label: (fpr, tpr)} on a log FAR axis into a PNG (matplotlib Agg, no display needed)."""

    def draw(ax):
        for label, (fpr, tpr) in curves.items():
            ax.plot(np.clip(fpr, min(fars) / 10, 1.0), np.asarray(tpr) * 100, label=label)
        ax.set(xscale="log", xlim=(min(fars), 1.0), ylim=(0, 100), xlabel="FAR", ylabel="TAR (%)", title=title)

    return _plot(path, draw)


def det_points(scores: np.ndarray, labels: np.ndarray, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, FRR) at `points` thresholds spread over the impostor score quantiles (decision: score > threshold)."""
    scores, labels = np.asarray(scores), np.asarray(labels, dtype=bool)
    imp, gen = np.sort(scores[~labels]), np.sort(scores[labels])
    thresholds = np.quantile(imp, 1 - np.logspace(-min(7, np.log10(max(len(imp), 10))), 0, points))
    far = 1 - np.searchsorted(imp, thresholds, side="right") / max(len(imp), 1)
    frr = np.searchsorted(gen, thresholds, side="right") / max(len(gen), 1)
    return far, frr


def save_det_png(curves: dict, path, title: str = "DET", markers: dict | None = None) -> Path:
    """DET curves {label: (far, frr)} on log-log axes; `markers` {label: [(far, frr), ...]} marks the operating
    points (e.g. the calibrated thresholds). A rate of zero (perfect separation) is drawn on the axes' floor."""
    far_floor, frr_floor = 1e-7, 1e-3  # FAR as a fraction, FRR in percent

    def draw(ax):
        for label, (far, frr) in curves.items():
            x = np.clip(np.asarray(far, float), far_floor, 1.0)
            line, = ax.plot(x, np.clip(np.asarray(frr, float) * 100, frr_floor, 100), label=label)
            for mx, my in (markers or {}).get(label, []):
                if mx is not None and my is not None:
                    ax.plot(max(mx, far_floor), max(my * 100, frr_floor), "o", color=line.get_color(), ms=4)
        ax.set(xscale="log", yscale="log", xlabel="FAR", ylabel="FRR (%)", title=title, ylim=(frr_floor, 100))

    return _plot(path, draw)


def save_edc_png(result: dict, path, title: str = "EDC") -> Path:
    """Error-versus-discard curve of `validation.edc.edc`: FNMR vs the discarded fraction, quality vs random."""

    def draw(ax):
        x = np.asarray(result["fractions"]) * 100
        ax.plot(x, np.asarray(result["fnmr_quality"]) * 100,
                label=f"discard by feature norm (pAUC {result['pauc_quality']:.4f})")
        ax.plot(x, np.asarray(result["fnmr_random"]) * 100, "--",
                label=f"discard at random (pAUC {result['pauc_random']:.4f})")
        ax.set(xlabel="comparisons discarded (%)", ylabel="FNMR (%)", title=title, ylim=(0, None))

    return _plot(path, draw)


def calibration_table(systems: dict[str, dict]) -> str:
    """Markdown table of calibrated systems {label: `validation.calibration.calibrate` result}: per FAR the
    threshold and FRR with their intervals and the held-out FAR / FRR."""

    def interval(v):
        return "-" if not v else f"[{v[0]:.4f}, {v[1]:.4f}]"

    rows = []
    for label, res in systems.items():
        for e in res["entries"]:
            held = e.get("heldout") or {}
            if e["threshold"] is None:
                rows.append([label, far_label(e["far"]), f"null (needs {e['needed_impostors']:,} impostors)",
                             "-", "-", "-", "-", "-"])
                continue
            rows.append([label, far_label(e["far"]), f"{e['threshold']:.4f}", interval(e.get("threshold_interval")),
                         f"{e['frr'] * 100:.2f}",
                         "-" if not e.get("frr_interval") else
                         f"[{e['frr_interval'][0] * 100:.2f}, {e['frr_interval'][1] * 100:.2f}]",
                         "-" if held.get("far") is None else f"{held['far']:.2e}",
                         "-" if held.get("frr") is None else f"{held['frr'] * 100:.2f}"])
    return markdown_table(["system", "target FAR", "threshold", "threshold CI", "FRR %", "FRR CI %",
                           "held-out FAR", "held-out FRR %"], rows)


def far_label(far: float) -> str:
    mantissa, exp = f"{far:.0e}".split("e")
    return f"{mantissa}e{int(exp)}"


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
