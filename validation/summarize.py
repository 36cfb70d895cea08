"""Summarise Hydra multirun sweeps: `python -m validation.summarize <sweep dir> [<sweep dir> ...] [--reference A,B]`.

A run dir (one with its own metrics.json, e.g. a `task=evaluate` run) is taken as a sweep of one job, so evaluation
runs of several checkpoints make a before/after table: rows are labelled by the override that differs (the
checkpoint), and when the runs hold folder-protocol metrics
(docs/evaluation.md, "Your own faces: the `folders` protocol") the columns are each level (clean, then the degraded
ones) x F1 / accuracy / TAR at the lowest FAR every run resolves.

Reads `<sweep>/<job_num>/metrics.json` (a flat dict metric -> value) and `<job>/.hydra/overrides.yaml` of every job of
every sweep given, groups runs that differ only in `seed=` (validation.seeds: seeds may run as separate sweeps), and
prints the README-style table (setting, number of seeds, SCface d1/d2/d3, TinyFace rank-1, IJB-B TAR@1e-4, HQ avg,
All avg as mean ± sample sd). `--reference baseline,D` adds, per reference, the paired difference of every setting over
the seeds both completed with its 95 % Student-t interval (* when it excludes 0). Writes `summary.md` and a bar chart
with error bars, `summary.png`, into the first sweep dir (or `--out`). Jobs without a readable metrics.json are listed
as failed (a failed job does not stop the others from being summarised).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from common import atomic
from validation.metrics_file import MetricsFileError, read_metrics
from validation.report import averages, markdown_table
from validation.seeds import Setting, group_runs, mean_sd, paired_difference

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


def job_metrics(job_dir: Path) -> tuple[dict | None, str]:
    """(metrics with the averages added, '') or (None, why the job counts as failed)."""
    try:
        metrics = read_metrics(job_dir)
    except MetricsFileError as e:
        return None, str(e)
    metrics.update(averages(metrics))
    return metrics, ""


def find_jobs(sweep: Path) -> list[Path]:
    """Job folders of a multirun: numbered sub-folders (or any with a .hydra folder), in job order; a run dir with
    its own metrics.json is its one job."""
    if (sweep / "metrics.json").is_file():
        return [sweep]
    jobs = [p for p in sweep.iterdir() if p.is_dir() and (p.name.isdigit() or (p / ".hydra").is_dir())]
    return sorted(jobs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def setting_labels(overrides: list[tuple[str, ...]], names: list[str]) -> list[str]:
    """Label each setting by the overrides that differ between settings (just the value when one key varies)."""
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


def _with_resolved(run_dir: Path, overrides: list[str], keys: tuple[str, ...]) -> list[str]:
    """The overrides plus `<key>=<value>` from the run's config_resolved.yaml for each key the command line did not
    name, so a run is grouped by what it really used: the seed left at its default, or the checkpoint of a run
    started from Python rather than main.py. Keys the file lacks (or a missing file) add nothing."""
    named = {o.split("=", 1)[0].lstrip("+") for o in overrides}
    missing = [k for k in keys if k not in named]
    path = run_dir / "config_resolved.yaml"
    if not missing or not path.is_file():
        return overrides
    import yaml

    resolved = yaml.safe_load(path.read_text()) or {}
    return overrides + [f"{k}={resolved[k]}" for k in missing if resolved.get(k) not in (None, "")]


def collect_runs(sweeps) -> list[dict]:
    """Every job of every sweep dir: name, overrides, metrics (None when failed) and why it failed."""
    runs = []
    for sweep in map(Path, sweeps):
        if not sweep.is_dir():
            raise FileNotFoundError(f"sweep directory {sweep} does not exist")
        jobs = find_jobs(sweep)
        if not jobs:
            raise FileNotFoundError(f"{sweep}: no job folders (expected <sweep>/<job_num>/metrics.json)")
        for job in jobs:
            metrics, reason = job_metrics(job)
            name = job.name if len(sweeps) == 1 or job == sweep else f"{sweep.name}/{job.name}"
            # a single run dir's rows are labelled by the checkpoint it evaluated
            keys = ("seed", "checkpoint") if job == sweep else ("seed",)
            overrides = _with_resolved(job, read_overrides(job), keys)
            runs.append({"name": name, "overrides": overrides, "metrics": metrics, "reason": reason})
    return runs


def _cell(mean, sd) -> str | None:
    if mean is None:
        return None
    return f"{mean:.2f}" if sd is None else f"{mean:.2f} ± {sd:.2f}"


def _difference_cell(diff) -> str | None:
    if diff.mean is None:
        return None
    if diff.low is None:
        return f"{diff.mean:+.2f} (n=1)"
    return f"{diff.mean:+.2f} [{diff.low:+.2f}, {diff.high:+.2f}]" + ("*" if diff.excludes_zero else "")


def _reference_label(ref: str, labels: list[str]) -> str:
    """`ref` as a setting label: the label itself, or the one label that is `<key>=<ref>`."""
    if ref in labels:
        return ref
    matches = [label for label in labels if "," not in label and label.partition("=")[2] == ref]
    if len(matches) != 1:
        raise KeyError(f"--reference {ref!r} is not one setting of these sweeps; settings: {'; '.join(labels)}")
    return matches[0]


_FOLDER_KEY = re.compile(r"^(?P<set>[^/]+)/(?P<level>[^/]+)/(?P<metric>acc|f1|tar_far_(?P<far>1e-\d+))$")


def folder_columns(runs: list[dict]) -> list[tuple[str, str]]:
    """Columns of folder-protocol evaluations: per level (clean first) F1, accuracy and TAR at the lowest FAR that
    every run with results resolves; [] when no run holds folder metrics."""
    done = [r["metrics"] for r in runs if r["metrics"]]
    found = [m for metrics in done for k in metrics if (m := _FOLDER_KEY.match(k))]
    if not found:
        return []
    sets = sorted({m["set"] for m in found})
    levels = sorted({(m["set"], m["level"]) for m in found}, key=lambda x: (sets.index(x[0]), x[1] != "clean", x[1]))
    columns = []
    for set_name, level in levels:
        prefix = f"{set_name}/{level}"
        title = level if len(sets) == 1 else f"{set_name} {level}"
        columns += [(f"{prefix}/f1", f"{title} F1"), (f"{prefix}/acc", f"{title} acc")]
        fars = sorted({m["far"] for m in found if m["set"] == set_name and m["level"] == level and m["far"]},
                      key=lambda f: float(f))
        common = [f for f in fars if all(f"{prefix}/tar_far_{f}" in metrics for metrics in done)]
        if common:
            columns.append((f"{prefix}/tar_far_{common[0]}", f"{title} TAR@{common[0]}"))
    return columns


def summarize(sweeps, reference: list[str] | None = None) -> tuple[str, list[dict]]:
    """-> (markdown text, one record per setting: setting label, seeds, means, sds, failed runs)."""
    sweeps = [sweeps] if isinstance(sweeps, (str, Path)) else list(sweeps)
    runs = collect_runs(sweeps)
    columns = folder_columns(runs) or COLUMNS
    settings: list[Setting] = group_runs(runs)
    labels = setting_labels([st.overrides for st in settings], [str(i) for i in range(len(settings))])
    records, rows = [], []
    for setting, label in zip(settings, labels):
        stats = [mean_sd(setting.values(k)) for k, _ in columns]
        records.append({"setting": label, "seeds": sorted(setting.runs), "means": [m for m, _ in stats],
                        "sds": [sd for _, sd in stats], "failed": setting.failed, "group": setting,
                        "columns": columns})
        name = label if setting.runs else f"{label} (failed)"
        rows.append([name, len(setting.runs)] + [_cell(m, sd) for m, sd in stats])
    text = markdown_table(["setting", "seeds"] + [title for _, title in columns], rows)
    if any(len(r["seeds"]) > 1 for r in records):
        text += "\nmean ± sample standard deviation (ddof 1) over the seeds of each setting\n"
    by_label = {r["setting"]: r["group"] for r in records}
    for ref in reference or []:
        ref = _reference_label(ref, list(by_label))
        diff_rows = []
        for r in records:
            if r["setting"] == ref:
                continue
            diffs = [paired_difference(r["group"], by_label[ref], k) for k, _ in columns]
            diff_rows.append([r["setting"], diffs[0].n] + [_difference_cell(d) for d in diffs])
        text += (f"\nPaired difference vs {ref} (mean over the seeds both completed, 95 % Student-t interval; "
                 "* = the interval excludes 0):\n\n")
        text += markdown_table(["setting", "seeds"] + [title for _, title in columns], diff_rows)
    failed = [(name, why, r["setting"]) for r in records for name, why in r["failed"]]
    if failed:
        text += "\nFailed jobs: " + "; ".join(f"{name} ({label}): {why}" for name, why, label in failed) + "\n"
    return text, records


def save_bar_chart(records: list[dict], path) -> Path | None:
    """Grouped bars: one group per metric column, one bar per setting with results; error bars = sd over seeds."""
    done = [r for r in records if r["seeds"]]
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    columns = done[0].get("columns", COLUMNS)
    x = np.arange(len(columns))
    width = 0.8 / len(done)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(columns) + 0.3 * len(done)), 4.5))
    for i, r in enumerate(done):
        values = [np.nan if m is None else m for m in r["means"]]
        errors = [0.0 if sd is None else sd for sd in r["sds"]]
        label = r["setting"] + (f" (n={len(r['seeds'])})" if len(r["seeds"]) > 1 else "")
        ax.bar(x - 0.4 + width * (i + 0.5), values, width, yerr=errors, capsize=2, label=label)
    ax.set_xticks(x, [title for _, title in columns], rotation=20, ha="right")
    ax.set(ylabel="%", ylim=(0, 100), title="sweep summary (mean ± sd over seeds)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small", ncol=min(3, len(done)))
    with atomic.atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.summarize", description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", help="Hydra multirun directories holding <job_num>/metrics.json, or run "
                                                  "dirs (e.g. task=evaluate runs) holding metrics.json")
    parser.add_argument("--reference", default=None, help="comma-separated settings to compare every setting with")
    parser.add_argument("--out", default=None, help="folder for summary.md/.png (default: the first sweep dir)")
    args = parser.parse_args(argv)
    reference = [r for r in (args.reference or "").split(",") if r]
    try:
        text, records = summarize(args.sweeps, reference)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or args.sweeps[0])
    atomic.write_text(out / "summary.md", text)
    chart = save_bar_chart(records, out / "summary.png")
    print(text)
    print(f"written: {out / 'summary.md'}" + (f", {chart}" if chart else ""))
    return 0 if any(r["seeds"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
