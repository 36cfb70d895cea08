"""What every run writes beside its results: resolved config, git commit, package versions, metrics.json."""

import logging
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from common import atomic
from validation.metrics_file import MetricsFileError, read_metrics

log = logging.getLogger(__name__)

PACKAGES = ("torch", "pytorch-lightning", "hydra-core", "omegaconf", "numpy", "opencv-python-headless",
            "scikit-learn", "onnx", "onnxruntime")


def git_state(repo: Path) -> dict:
    """Commit and dirty flag of the checkout (or 'unknown' outside git)."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else ""

    try:
        commit = git("rev-parse", "HEAD") or "unknown"
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "unknown", False
    return {"commit": commit, "dirty": dirty}


def package_versions() -> dict:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_run_info(cfg: DictConfig, out_dir: Path) -> None:
    """config_resolved.yaml, git.json and versions.json into the run dir (Hydra's .hydra/ holds the unresolved one)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out_dir / "config_resolved.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    atomic.write_json(out_dir / "git.json", git_state(Path(cfg.paths.root_dir)))
    atomic.write_json(out_dir / "versions.json", package_versions())


def existing_metrics(out_dir: Path) -> dict[str, float]:
    """What a run dir's metrics.json already holds ({} for a new run)."""
    try:
        return read_metrics(out_dir)
    except MetricsFileError as e:
        if (Path(out_dir) / "metrics.json").exists():
            log.warning("%s: %s; writing a new one", Path(out_dir) / "metrics.json", e)
        return {}


def write_metrics(metrics: dict, out_dir: Path) -> tuple[Path, dict[str, float]]:
    """metrics.json: a flat dict metric name -> value, merged into what the run dir already holds (a resumed run
    adds and updates, never drops earlier results). Returns (path, merged metrics)."""
    path = out_dir / "metrics.json"
    merged = {**existing_metrics(out_dir), **{k: float(v) for k, v in metrics.items()}}
    atomic.write_json(path, dict(sorted(merged.items())))
    return path, merged
