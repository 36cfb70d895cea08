"""Runs that differ only in their training seed, as one setting: grouping, mean ± sd, paired differences.

The grouping rule (shared by the sweep summarizer and any before/after comparison): two runs belong together when
their overrides are equal once `seed=` is removed; anything else that differs keeps them apart, so runs that differ
in more than the seed are never averaged. Statistics follow the usual conventions: sample standard deviation (ddof 1)
and, for a setting against a reference, the mean of the per-seed differences over the seeds both completed with a
95 % Student-t interval on n - 1 degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SEED_KEY = "seed"


def split_seed(overrides: list[str]) -> tuple[tuple[str, ...], str | None]:
    """(overrides without the seed, sorted; the seed value or None when the run used the default)."""
    rest, seed = [], None
    for item in overrides:
        key, _, value = item.partition("=")
        if key.lstrip("+") == SEED_KEY:
            seed = value
        else:
            rest.append(item)
    return tuple(sorted(rest)), seed


@dataclass
class Setting:
    """One group of runs: the overrides they share and their metrics by seed."""

    overrides: tuple[str, ...]
    runs: dict[str, dict] = field(default_factory=dict)  # seed -> metrics
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run name, why)

    def values(self, key: str) -> np.ndarray:
        return np.array([m[key] for m in self.runs.values() if key in m], dtype=float)


def group_runs(runs: list[dict], default_seed: str = "42") -> list[Setting]:
    """runs: dicts with `name`, `overrides` (list), `metrics` (dict or None), `reason`; in first-seen group order.
    Two completed runs of one setting with the same seed are refused (which one would count?)."""
    groups: dict[tuple[str, ...], Setting] = {}
    for run in runs:
        key, seed = split_seed(run["overrides"])
        seed = seed if seed is not None else default_seed
        setting = groups.setdefault(key, Setting(key))
        if run["metrics"] is None:
            setting.failed.append((run["name"], run.get("reason", "")))
            continue
        if seed in setting.runs:
            raise ValueError(f"two runs of the setting {list(key) or '(no overrides)'} with seed {seed}: "
                             f"{run['name']} and an earlier one; remove one of the sweep directories")
        setting.runs[seed] = run["metrics"]
    return list(groups.values())


def mean_sd(values: np.ndarray) -> tuple[float | None, float | None]:
    if len(values) == 0:
        return None, None
    return float(values.mean()), (float(values.std(ddof=1)) if len(values) > 1 else None)


def t_quantile(p: float, dof: int) -> float:
    from scipy.stats import t  # scipy comes with scikit-learn

    return float(t.ppf(p, dof))


@dataclass
class PairedDifference:
    n: int
    mean: float | None
    low: float | None
    high: float | None

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)


def paired_difference(setting: Setting, reference: Setting, key: str, confidence: float = 0.95) -> PairedDifference:
    """Mean of setting - reference over the seeds both completed, with a Student-t interval (None for n < 2)."""
    seeds = [s for s in setting.runs if s in reference.runs and key in setting.runs[s] and key in reference.runs[s]]
    diffs = np.array([setting.runs[s][key] - reference.runs[s][key] for s in seeds], dtype=float)
    if len(diffs) == 0:
        return PairedDifference(0, None, None, None)
    mean = float(diffs.mean())
    if len(diffs) < 2:
        return PairedDifference(1, mean, None, None)
    half = t_quantile(0.5 + confidence / 2, len(diffs) - 1) * float(diffs.std(ddof=1)) / math.sqrt(len(diffs))
    return PairedDifference(len(diffs), mean, mean - half, mean + half)
