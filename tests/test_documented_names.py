"""Every command and Python name the README and docs/ document exists.

The lists are read from the pages themselves: every `python -m <module>` must answer `--help`, every
`python <script>.py` must exist, and every dotted name in a code span (or a Python import in a code block) that
starts with a project package must import and resolve.
"""

import importlib
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PACKAGES = tuple(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"])
EXTERNAL_MODULES = {"pytest", "venv", "pip"}  # `python -m` commands of other tools the pages may show
FILE_SUFFIXES = {"py", "json", "yaml", "yml", "csv", "md", "txt", "npz", "npy", "png", "onnx", "rec", "idx", "bin",
                 "ckpt", "pth", "mat", "jpg", "lock"}

MODULE_COMMAND = re.compile(r"\bpython(?:3(?:\.\d+)?)?\s+-m\s+([A-Za-z_][\w.]*)")
SCRIPT_COMMAND = re.compile(r"\bpython(?:3(?:\.\d+)?)?\s+((?:[\w.-]+/)*[\w.-]+\.py)\b")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCED = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
DOTTED = re.compile(r"(?<![\w./+-])((?:" + "|".join(PACKAGES) + r")(?:\.[A-Za-z_]\w*)+)(=?)")
IMPORT = re.compile(r"^\s*(?:from\s+([\w.]+)\s+import\s+([\w, ]+)|import\s+([\w.]+))", re.MULTILINE)


def page_texts() -> list[str]:
    return [p.read_text(encoding="utf-8") for p in PAGES]


def module_commands(texts) -> list[str]:
    return sorted({m for t in texts for m in MODULE_COMMAND.findall(t)})


def script_commands(texts) -> list[str]:
    return sorted({s for t in texts for s in SCRIPT_COMMAND.findall(t) if s != "main.py"})


def dotted_names(text: str) -> set[str]:
    """Dotted names of project packages in code spans and Python code blocks. A name followed by `=` is a config
    override (`validation.sets=...`), not a Python name; its value may be one (`..._target_=training.x.Y`)."""
    spans = CODE_SPAN.findall(FENCED.sub("", text))
    blocks = [body for lang, body in FENCED.findall(text) if lang == "python"]
    names = set()
    for chunk in spans + blocks:
        for name, assigned in DOTTED.findall(chunk):
            if not assigned and name.rsplit(".", 1)[-1] not in FILE_SUFFIXES:
                names.add(name)
    for block in blocks:
        for module, imported, plain in IMPORT.findall(block):
            if plain:
                names.add(plain)
            else:
                names.update(f"{module}.{n.strip()}" for n in imported.split(",") if n.strip())
    return {n for n in names if n.split(".")[0] in PACKAGES}


def resolve(name: str):
    """The object a dotted name denotes: the longest importable module prefix, then attributes."""
    parts = name.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        prefix = ".".join(parts[: i + 1])
        try:
            obj = importlib.import_module(prefix)
        except ModuleNotFoundError as e:
            if e.name != prefix:
                raise
            raise LookupError(f"{name}: {'.'.join(parts[:i])} has no {part!r}") from None
    return obj


def is_config_path(name: str, config) -> bool:
    """`validation.<key>...` is an option of the `validation` config group (e.g. `validation.protocols.ijbb.feature`)
    when <key> is a key of the composed `validation` node: the package and the group share their name."""
    parts = name.split(".")
    return parts[0] == "validation" and len(parts) > 1 and parts[1] in config.validation


TEXTS = page_texts()
NAMES = sorted(set().union(*(dotted_names(t) for t in TEXTS)))


def test_parsers_find_what_the_pages_write():
    text = ("Run `python -m dataset.convert --help` or `python bench/bench_eval.py`; call `models.build_backbone(x)`,"
            " set `validation.sets=[lfw]` and `+callbacks.q._target_=training.quality_signal.QualitySignal`; read "
            "`dataset/synthetic/probe.py` and `train/dataset.json`.\n```python\nfrom dataset.formats import load_bin,"
            " write_bin\n```\n")
    assert module_commands([text]) == ["dataset.convert"]
    assert script_commands([text]) == ["bench/bench_eval.py"]
    assert dotted_names(text) == {"dataset.convert", "models.build_backbone", "training.quality_signal.QualitySignal",
                                  "dataset.formats", "dataset.formats.load_bin", "dataset.formats.write_bin"}


def test_resolve_rejects_names_that_do_not_exist():
    assert resolve("validation.report.averages").__name__ == "averages"
    for missing in ("models.no_such_function", "validation.no_such_module.thing", "dataset.formats.NoSuchClass"):
        with pytest.raises(LookupError):
            resolve(missing)


def test_pages_document_commands_and_names():
    assert {"dataset.convert", "dataset.prepare", "deploy.export"} <= set(module_commands(TEXTS))
    assert len(NAMES) > 20


@pytest.mark.parametrize("module", [m for m in module_commands(TEXTS) if m not in EXTERNAL_MODULES])
def test_documented_module_commands_answer_help(module):
    assert module.split(".")[0] in PACKAGES, f"`python -m {module}` is neither a project module nor a known tool"
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()


@pytest.mark.parametrize("script", script_commands(TEXTS))
def test_documented_scripts_exist(script):
    assert (REPO / script).is_file(), f"`python {script}` is documented but {script} does not exist"


def denotes(obj, name: str) -> bool:
    """The object is what the page calls it: a module of that name, a class or function defined under its own
    name (not an alias), or a module's UPPER_CASE constant (a registry, a table of sets)."""
    last = name.rsplit(".", 1)[-1]
    if isinstance(obj, types.ModuleType):
        return obj.__name__ == name
    if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")):
        return obj.__name__ == last
    return last.isupper() and obj is not None


def test_denotes_tells_a_name_from_an_alias():
    import validation.report
    from validation.protocols import PROTOCOLS

    assert denotes(validation.report, "validation.report") and denotes(PROTOCOLS, "validation.protocols.PROTOCOLS")
    assert denotes(validation.report.averages, "validation.report.averages")
    assert not denotes(validation.report.averages, "validation.report.mean_of_sets")
    assert not denotes(validation.report, "validation.summary") and not denotes(0.5, "validation.threshold")


@pytest.mark.parametrize("name", NAMES)
def test_documented_python_names_resolve(name, compose):
    try:
        obj = resolve(name)
    except LookupError:
        assert is_config_path(name, compose()), f"{name} is neither a project name nor a validation option"
        return
    assert denotes(obj, name), f"{name} resolves to {obj!r}"


def test_model_meta_colour_order_is_documented():
    import models

    assert models.build_backbone("tiny").meta["color"] == "BGR"
    assert models.build_backbone("iresnet_r50").meta["color"] == "RGB"
