"""The package layers of pyproject.toml hold (import-linter), and a violation is caught."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _lint(config: Path) -> int:
    from importlinter import cli

    old = os.getcwd()
    os.chdir(REPO)  # root packages are found on sys.path, which holds the repository root under pytest
    try:
        return cli.lint_imports(config_filename=str(config), no_cache=True, no_logo=True)
    finally:
        os.chdir(old)


def test_layer_contracts_are_kept():
    assert _lint(REPO / "pyproject.toml") == 0


def test_an_import_running_up_is_reported(tmp_path, monkeypatch, capsys):
    """A copy of the tree where `alignment` imports `models` breaks the layers contract."""
    import shutil
    import tomllib

    for pkg in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "alignment" / "bad.py").write_text("import models.registry\n")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] in ("alignment", "models")]:
        monkeypatch.delitem(sys.modules, name)
    from importlinter import cli

    monkeypatch.chdir(tmp_path)
    assert cli.lint_imports(config_filename=str(tmp_path / "pyproject.toml"), no_cache=True, no_logo=True) == 1
    report = capsys.readouterr().out
    assert "alignment is not allowed to import models" in report and "alignment.bad -> models.registry" in report


@pytest.mark.parametrize("module", ["validation", "validation.suite", "validation.report", "validation.protocols"])
def test_metric_code_imports_without_torch(module):
    """`import validation...` stays numpy-only (torch loads only for datasets and DDP gathering)."""
    import subprocess

    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"  # else the first torch modules it loaded
