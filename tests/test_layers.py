"""The package layers of pyproject.toml hold (import-linter), and a violation is caught."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def loggers_left_enabled():
    """import-linter configures logging with `disable_existing_loggers`: undo it, or later tests' caplog sees
    nothing from the project's loggers."""
    import logging

    yield
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.disabled = False


def test_layer_contracts_are_kept(capsys):
    from importlinter import cli

    # the root packages are found where the editable install points: the repository
    assert cli.lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True, no_logo=True) == 0
    assert "0 broken" in capsys.readouterr().out


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
