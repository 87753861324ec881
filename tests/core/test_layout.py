"""The core's layout: folders by role, no import circle, plugins on the public API only, old imports forwarded."""
from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "modkit"
ROLES = {"storage", "core", "data", "plugins", "config", "training", "runs", "evaluation", "reporting", "cli", "scaffold", "tracking", "sweep"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
                                         or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def runtime_imports(path: Path, known: set[str]) -> set[str]:
    """Every modkit module this file imports when it runs (module level or inside functions).

    Imports under ``if TYPE_CHECKING`` never execute and are left out. ``from pkg import name``
    counts as an import of ``pkg.name`` when that is a module, else of ``pkg``.
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "modkit")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "modkit":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in known}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    edges = {name: runtime_imports(path, known) - {name} for name, path in files.items()}
    # a package's own __init__ is imported before any of its submodules: that is not a circle of ours
    return {name: {d for d in deps if not name.startswith(d + ".")} for name, deps in edges.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_in_modkit():
    assert find_cycle(graph()) is None


def test_folders_are_named_by_role():
    top_modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "__main__", "_compat", "_meta"}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == ROLES
    assert top_modules <= {"errors", "api", "testing", "distributions"}, f"flat modules left at the top: {top_modules}"


#: the modules a plugin may import from: the contracts, the distribution math, the contract-test kit
PUBLIC_MODULES = {"modkit", "modkit.distributions", "modkit.testing"}


def test_first_party_plugins_import_only_the_public_api():
    offenders = []
    for path in (ROOT / "plugins").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("modkit."):
                if node.module not in PUBLIC_MODULES:
                    offenders.append(f"{path.relative_to(ROOT)}: from {node.module}")
            if isinstance(node, ast.Import):
                offenders += [f"{path.relative_to(ROOT)}: import {a.name}" for a in node.names
                              if a.name.startswith("modkit.") and a.name not in PUBLIC_MODULES]
    assert offenders == []


def test_public_names_all_resolve():
    import modkit

    missing = [name for name in modkit.__all__ if not hasattr(modkit, name)]
    assert missing == []
    assert len(set(modkit.__all__)) == len(modkit.__all__)


@pytest.mark.parametrize("old, new", [("modkit.gaussian", "modkit.core.gaussian"), ("modkit.trainer", "modkit.training.trainer"),
                                      ("modkit.rundir", "modkit.storage.files"),
                                      ("modkit.runs.checkpoint", "modkit.storage.checkpoint"), ("modkit.recipe", "modkit.config.recipe")])
def test_old_flat_module_still_imports_with_one_warning(old, new):
    # a fresh interpreter, so the module is imported for the first time there
    code = f"import warnings; warnings.simplefilter('always'); import {old} as m; print(m.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == new
    assert f"{old} moved in modkit 0.2: use {new}" in out.stderr
    assert out.stderr.count("DeprecationWarning") == 1


def test_old_attribute_of_a_package_forwards_with_a_warning():
    import modkit
    import modkit.data

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cls = modkit.data.ArrayRecords
    assert cls is modkit.ArrayRecords
    assert any("use from modkit import ArrayRecords" in str(w.message) for w in caught)
    with pytest.raises(AttributeError):
        modkit.data.no_such_name


def test_the_training_loop_imports_nothing_of_what_runs_around_it():
    """The trainer holds the loop, its faults and checkpoint timing; trackers, evaluation, reports and the run
    lifecycle reach it as callbacks, never the other way round."""
    above = ("modkit.evaluation", "modkit.reporting", "modkit.tracking", "modkit.runs")
    edges = graph()
    assert {m for m in edges["modkit.training.trainer"] if m.startswith(above)} == set()
    training = {name: deps for name, deps in edges.items() if name.startswith("modkit.training")}
    assert {(n, d) for n, deps in training.items() for d in deps if d.startswith(above)} == set()


def test_storage_is_below_training_and_the_run_lifecycle():
    edges = graph()
    allowed = ("modkit.storage", "modkit.errors", "modkit._meta", "modkit._compat")
    wrong = {(n, d) for n, deps in edges.items() if n.startswith("modkit.storage") for d in deps if not d.startswith(allowed)}
    assert wrong == set()


def test_reporting_modules_do_not_import_the_run_lifecycle_when_they_run():
    edges = graph()
    for name in ("modkit.reporting.generation", "modkit.reporting.samples", "modkit.reporting.figures"):
        assert {d for d in edges[name] if d.startswith("modkit.runs")} == set(), name
