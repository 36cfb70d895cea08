"""Summarise a Hydra multirun sweep: `python -m validation.summarize <sweep dir>`.

Reads `<sweep>/<job_num>/metrics.json` (a flat dict metric -> value) and `<job>/.hydra/overrides.yaml` of every job,
prints the README-style markdown table (setting, SCface d1/d2/d3, TinyFace rank-1, IJB-B TAR@1e-4, HQ avg, All avg),
and saves it as `<sweep>/summary.md` with a bar chart `<sweep>/summary.png`. Jobs without a readable metrics.json
are listed as failed (a failed job does not stop the others from being summarised).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import atomic
from validation.report import averages, markdown_table

COLUMNS = [("scface/d1", "SCface d1"), ("scface/d2", "SCface d2"), ("scface/d3", "SCface d3"),
           ("tinyface/rank_1", "TinyFace r1"), ("ijbb/tar_far_1e-4", "IJB-B TAR@1e-4"), ("val/hq_avg", "HQ avg"),
           ("val/all_avg", "All avg")]


def read_overrides(job_dir: Path) -> list[str]:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    import yaml  # PyYAML comes with hydra / omegaconf

    data = yaml.safe_load(path.read_text()) or []
    return [str(x) for x in data] if isinstance(data, list) else []


def read_metrics(job_dir: Path) -> tuple[dict | None, str]:
    """(metrics, '') or (None, why the job counts as failed)."""
    path = job_dir / "metrics.json"
    if not path.is_file():
        return None, "no metrics.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"unreadable metrics.json ({e})"
    if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
        data = data["metrics"]
    if not isinstance(data, dict) or not data:
        return None, "empty metrics.json"
    metrics = {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}
    metrics.update(averages(metrics))
    return metrics, ""


def find_jobs(sweep: Path) -> list[Path]:
    """Job folders of a multirun: numbered sub-folders (or any with a .hydra folder), in job order."""
    jobs = [p for p in sweep.iterdir() if p.is_dir() and (p.name.isdigit() or (p / ".hydra").is_dir())]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def setting_labels(overrides: list[list[str]], names: list[str]) -> list[str]:
    """Label each job by the overrides that differ between jobs (just the value when one key varies)."""
    parsed = [dict(o.split("=", 1) if "=" in o else (o, "") for o in ov) for ov in overrides]
    keys = sorted({k for p in parsed for k in p})
    varying = [k for k in keys if len({p.get(k) for p in parsed}) > 1] or keys
    labels = []
    for p, name in zip(parsed, names):
        if len(varying) == 1 and varying[0] in p:
            labels.append(p[varying[0]])
        else:
            labels.append(", ".join(f"{k}={p[k]}" for k in varying if k in p) or f"job {name}")
    return labels


def summarize(sweep) -> tuple[str, list[dict]]:
    """-> (markdown text, one record per job: name, setting, metrics or None, reason)."""
    sweep = Path(sweep)
    if not sweep.is_dir():
        raise FileNotFoundError(f"sweep directory {sweep} does not exist")
    jobs = find_jobs(sweep)
    if not jobs:
        raise FileNotFoundError(f"{sweep}: no job folders (expected <sweep>/<job_num>/metrics.json)")
    labels = setting_labels([read_overrides(j) for j in jobs], [j.name for j in jobs])
    records = []
    for job, label in zip(jobs, labels):
        metrics, reason = read_metrics(job)
        records.append({"job": job.name, "setting": label, "metrics": metrics, "reason": reason})
    rows = []
    for r in records:
        if r["metrics"] is None:
            rows.append([f"{r['setting']} (failed)"] + [None] * len(COLUMNS))
        else:
            rows.append([r["setting"]] + [r["metrics"].get(k) for k, _ in COLUMNS])
    text = markdown_table(["setting"] + [title for _, title in COLUMNS], rows)
    failed = [r for r in records if r["metrics"] is None]
    if failed:
        text += "\nFailed jobs: " + "; ".join(f"{r['job']} ({r['setting']}): {r['reason']}" for r in failed) + "\n"
    return text, records


def save_bar_chart(records: list[dict], path) -> Path | None:
    """Grouped bars: one group per metric column, one bar per successful job."""
    done = [r for r in records if r["metrics"] is not None]
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(COLUMNS))
    width = 0.8 / len(done)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(COLUMNS) + 0.3 * len(done)), 4.5))
    for i, r in enumerate(done):
        values = [r["metrics"].get(k, np.nan) for k, _ in COLUMNS]
        ax.bar(x - 0.4 + width * (i + 0.5), values, width, label=r["setting"])
    ax.set_xticks(x, [title for _, title in COLUMNS], rotation=20, ha="right")
    ax.set(ylabel="%", ylim=(0, 100), title="sweep summary")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncol=min(3, len(done)))
    with atomic.atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.summarize", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", help="Hydra multirun directory holding <job_num>/metrics.json")
    args = parser.parse_args(argv)
    try:
        text, records = summarize(args.sweep)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sweep = Path(args.sweep)
    atomic.write_text(sweep / "summary.md", text)
    chart = save_bar_chart(records, sweep / "summary.png")
    print(text)
    print(f"written: {sweep / 'summary.md'}" + (f", {chart}" if chart else ""))
    return 0 if any(r["metrics"] is not None for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
