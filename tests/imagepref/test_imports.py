"""The package's import structure: no import cycles, the command line on top of everything, and
labeling light enough to run beside Label Studio without torch or the rest of imagepref."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMAND_LINE = ("imagepref.recipes.cli", "imagepref.recipes.commands")


def package_modules() -> dict[str, Path]:
    """Every module of the installed packages (pyproject's package list and folders) by name."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = setuptools["package-dir"]
    modules = {}
    for package in setuptools["packages"]:
        top = max((name for name in folders if package == name or package.startswith(name + ".")), key=len)
        folder = ROOT / folders[top] / Path(*package[len(top) :].split(".")[1:])
        for file in sorted(folder.glob("*.py")):
            modules[package if file.stem == "__init__" else f"{package}.{file.stem}"] = file
    return modules


MODULES = package_modules()


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imported_names(path: Path) -> set[str]:
    """What ``path`` imports, at module level or inside functions (absolute names; ``from a import
    b`` counts as ``a.b`` when that is a module), leaving out ``if TYPE_CHECKING:`` blocks."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    names.add(full if full in MODULES else child.module)
            visit(child)

    visit(ast.parse(path.read_text()))
    return names


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            connect(node)
    return found


def test_no_module_imports_another_that_imports_it_back():
    # Imports inside functions count too: a lazy import back is still a cycle between the modules.
    graph = {
        name: {target for target in imported_names(path) if target in MODULES and target != name}
        for name, path in MODULES.items()
    }
    assert cycles(graph) == []


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    # Each module is imported first, with no other imagepref module loaded before it: a module-level
    # cycle fails for whichever of its members is imported first.
    script = """
import importlib, json, sys, traceback
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m == "imagepref" or m.startswith("imagepref.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except BaseException as error:
        failures[name] = f"{type(error).__name__}: {error}"
print(json.dumps(failures))
"""
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(sorted(MODULES))],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT.parent,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}


def test_the_command_line_starts_without_torch():
    # `imagepref label ...` runs beside Label Studio on machines without a GPU stack: the commands
    # import torch, transformers and TRL only when they run.
    script = "import sys, imagepref.recipes.cli; print(sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_only_the_command_line_imports_the_command_line():
    library = {name: path for name, path in MODULES.items() if not name.startswith(COMMAND_LINE)}
    assert len(library) > 50 and "imagepref.recipes.stages.training" in library
    offenders = {}
    for name, path in library.items():
        strings = {
            node.value
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
        named = {target for target in imported_names(path) | strings if target.startswith(COMMAND_LINE)}
        if named:
            offenders[name] = sorted(named)
    assert offenders == {}


def test_labeling_imports_no_torch_and_no_other_imagepref_package():
    labeling = {name: path for name, path in MODULES.items() if name.startswith("imagepref.labeling")}
    assert "imagepref.labeling.simulate" in labeling
    heavy = ("torch", "imagepref.policy", "imagepref.reward", "imagepref.eval", "imagepref.recipes")
    offenders = {
        name: sorted(t for t in imported_names(path) if t.split(".")[0] == "torch" or t.startswith(heavy))
        for name, path in labeling.items()
    }
    assert {name: found for name, found in offenders.items() if found} == {}
