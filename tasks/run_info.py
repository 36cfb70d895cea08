"""What every run writes beside its results: resolved config, git commit, package versions, metrics.json."""

import json
import logging
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

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
    (out_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (out_dir / "git.json").write_text(json.dumps(git_state(Path(cfg.paths.root_dir)), indent=2) + "\n")
    (out_dir / "versions.json").write_text(json.dumps(package_versions(), indent=2) + "\n")


def write_metrics(metrics: dict, out_dir: Path) -> Path:
    """metrics.json: a flat dict metric name -> final value."""
    path = out_dir / "metrics.json"
    flat = {k: float(v) for k, v in sorted(metrics.items())}
    path.write_text(json.dumps(flat, indent=2) + "\n")
    return path
