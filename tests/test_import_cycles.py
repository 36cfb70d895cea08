"""No import cycle between files of the project, counting every import: inside functions, under TYPE_CHECKING, the
`from a import b` where `b` is a module (an edge to a/b.py). An import of a package is an edge to its __init__.py.
import-linter checks layers between packages; this checks the files inside them."""

import ast
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = tuple(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"])
TOP_LEVEL_MODULES = ("main",)


def project_modules(root: Path, packages=PACKAGES, top_level=TOP_LEVEL_MODULES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of `packages` (a package is its __init__.py)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for name in top_level:
        if (root / f"{name}.py").is_file():
            modules[name] = root / f"{name}.py"
    return modules


def _imported(node: ast.AST, module: str, is_package: bool, modules: dict) -> set[str]:
    """Project modules one import statement names."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in modules}
    if node.level:  # relative: resolved against the importing module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[:len(base) - node.level + 1]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module
    found = set()
    for alias in node.names:
        if f"{source}.{alias.name}" in modules:
            found.add(f"{source}.{alias.name}")  # `from a import b`, b a module
        elif source in modules:
            found.add(source)  # a name defined in (or re-exported by) a/__init__.py or a.py
    return found


def import_graph(root: Path, packages=PACKAGES, top_level=TOP_LEVEL_MODULES) -> dict[str, set[str]]:
    """Repository-relative file -> the project files it imports (anywhere in the file)."""
    modules = project_modules(root, packages, top_level)
    files = {module: path.relative_to(root).as_posix() for module, path in modules.items()}
    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets |= _imported(node, module, path.name == "__init__.py", modules)
        graph[files[module]] = {files[t] for t in targets if t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search; files in sorted order)."""
    state = {}  # file -> 1 on the current path, 2 done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_no_file_level_import_cycle():
    graph = import_graph(REPO)
    assert len(graph) > 100, "the project's files were not found"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between files: " + " -> ".join(cycle)


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize("b_imports_a", [
    "def late():\n    from pkg.a import helper\n",  # inside a function
    "from pkg import a\n",  # `from package import module`
    "def late():\n    from . import a\n",  # relative
    "from pkg.sub import thing\n",  # through a package's __init__, which imports a
])
def test_a_planted_cycle_is_found_and_named(tmp_path, b_imports_a):
    root = _package(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from pkg.b import x\n\ndef helper():\n    pass\n",
                               "pkg/b.py": "x = 1\n" + b_imports_a,
                               "pkg/sub/__init__.py": "from pkg.a import helper as thing\n"})
    cycle = find_cycle(import_graph(root, packages=("pkg",)))
    assert cycle is not None and cycle[0] == cycle[-1] and {"pkg/a.py", "pkg/b.py"} <= set(cycle)


def test_no_cycle_reported_for_a_chain_or_a_package_importing_its_modules(tmp_path):
    root = _package(tmp_path, {"pkg/__init__.py": "from pkg.b import x\n", "pkg/a.py": "from pkg.b import x\n",
                               "pkg/b.py": "import os\nx = 1\n", "main.py": "import pkg.a\nfrom pkg import b\n"})
    graph = import_graph(root, packages=("pkg",))
    assert graph == {"pkg/__init__.py": {"pkg/b.py"}, "pkg/a.py": {"pkg/b.py"}, "pkg/b.py": set(),
                     "main.py": {"pkg/a.py", "pkg/b.py"}}
    assert find_cycle(graph) is None
