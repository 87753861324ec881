"""The package's layout: every import runs down the layer table of docs/architecture.md, no import circle,
plugins on the public API only, old imports forwarded."""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "modkit"
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# Three files sit outside the table on purpose. The package's own ``__init__`` is the public facade: it
# re-exports from every layer, so it stands above them all and no module inside modkit may lean on it.
# ``python -m modkit`` is the command line. ``_compat`` is import machinery that forwards old names by
# string; it imports no modkit module, so it belongs at the bottom with ``errors``.
FACADE = "modkit"
OUTSIDE_TABLE = {"__main__": "cli", "_compat": "errors"}


# ---------------------------------------------------------------- the checker


def layer_table(text: str) -> list[list[str]]:
    """The table's first column after the ``<!-- layers: ... -->`` comment, bottom layer first: each row
    is the folders or top-level modules its cell names in backticks (the ``errors`` row names two)."""
    lines = text.splitlines()
    marker = next((i for i, line in enumerate(lines) if line.strip().startswith("<!-- layers:")), None)
    assert marker is not None, f"{ARCHITECTURE.name}: no <!-- layers: ... --> comment before the layer table"
    rows = []
    for line in lines[marker + 1:]:
        if not line.strip().startswith("|"):
            if rows:
                break
            continue
        first = line.strip().strip("|").split("|")[0].strip()
        if set(first) <= set("-: "):
            continue  # the header's underline
        names = re.findall(r"`([^`]+)`", first)
        if names:  # the header row names no module
            rows.append([name.removesuffix(".py").strip("/") for name in names])
    assert rows, f"{ARCHITECTURE.name}: the layer table after the <!-- layers --> comment is empty"
    return rows


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
                                         or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _resolve(name: str, known: set[str]) -> str | None:
    """The longest known module that ``name`` starts with (``modkit.a.b.attr`` → ``modkit.a.b``)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in known:
            return ".".join(parts[:n])
    return None


def _string_import(node: ast.Call) -> tuple[str, list[str]] | None:
    """``__import__("modkit.x", fromlist=[...])`` and ``importlib.import_module("modkit.x")``: the name and fromlist."""
    func = node.func
    called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if called not in ("__import__", "import_module") or not node.args:
        return None
    first = node.args[0]
    if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
        return None
    fromlist: list[str] = []
    for keyword in node.keywords:
        if keyword.arg == "fromlist" and isinstance(keyword.value, (ast.List, ast.Tuple)):
            fromlist = [e.value for e in keyword.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    if called == "__import__" and len(node.args) >= 4 and isinstance(node.args[3], (ast.List, ast.Tuple)):
        fromlist = [e.value for e in node.args[3].elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return first.value, fromlist


def runtime_imports(source: str, module: str, known: set[str], is_package: bool = False) -> list[tuple[str, int]]:
    """Every modkit module ``module``'s source imports when it runs, with the line: module level, inside
    functions, and the string forms ``__import__("modkit...")`` / ``importlib.import_module("modkit...")``.

    Imports under ``if TYPE_CHECKING:`` never execute and are left out. ``from pkg import name`` counts as
    an import of ``pkg.name`` when that is a module, else of ``pkg``.
    """
    found: list[tuple[str, int]] = []
    package = module if is_package else module.rpartition(".")[0]

    def add(name: str, line: int, fromlist: list[str] = ()) -> None:
        if name.split(".")[0] != "modkit":
            return
        for sub in fromlist or [None]:
            target = _resolve(f"{name}.{sub}" if sub else name, known)
            if target:
                found.append((target, line))

    def visit(node: ast.AST) -> None:
        if _type_checking_block(node):
            for child in getattr(node, "orelse", []):  # the else branch does run
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            add(base, node.lineno, [a.name for a in node.names])
        elif isinstance(node, ast.Call) and (string := _string_import(node)):
            add(string[0], node.lineno, string[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return [(target, line) for target, line in found if target != module]


def layer_of(module: str, layers: dict[str, int]) -> str | None:
    """The table's name for the layer a module sits in: its folder under modkit/, or its own file name."""
    if module == FACADE:
        return FACADE
    top = module.split(".")[1]
    top = OUTSIDE_TABLE.get(top, top)
    return top if top in layers else None


def upward_arrows(sources: dict[str, str], table: list[list[str]], packages: set[str] = frozenset()) -> tuple[list[str], list[str]]:
    """The imports that run up the table (or into the facade), and the modules the table does not place."""
    layers = {name: rank for rank, row in enumerate(table) for name in row}
    layers[FACADE] = len(table)
    known = set(sources)
    arrows, unplaced = [], []
    for module in sorted(sources):
        here = layer_of(module, layers)
        if here is None:
            unplaced.append(f"{module}: its folder is not in the layer table of docs/architecture.md")
            continue
        for target, line in sorted(set(runtime_imports(sources[module], module, known, module in packages))):
            there = layer_of(target, layers)
            if there == FACADE and here != FACADE:
                arrows.append(f"{module} → {target} (line {line}): {here} imports the facade, which imports every layer "
                              "(import the name from the module that defines it)")
            elif there is not None and layers[there] > layers[here]:
                arrows.append(f"{module} → {target} (line {line}): {here} is below {there}")
    return arrows, unplaced


def package_sources() -> tuple[dict[str, str], set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: path.read_text() for name, path in files.items()}, {name for name, p in files.items() if p.name == "__init__.py"}


def graph() -> dict[str, set[str]]:
    sources, packages = package_sources()
    known = set(sources)
    edges = {name: {t for t, _ in runtime_imports(src, name, known, name in packages)} for name, src in sources.items()}
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


# ---------------------------------------------------------------- the checker, on planted source

TOY_TABLE = "intro\n<!-- layers: bottom first -->\n| layer | modules |\n|---|---|\n| `low`, `_base` | x |\n| `mid` | y |\n| `high` | z |\n\nafter\n| `nope` | |\n"


def test_layer_table_reads_the_first_column_bottom_first():
    assert layer_table(TOY_TABLE) == [["low", "_base"], ["mid"], ["high"]]


def test_checker_catches_an_upward_dunder_import_and_ignores_type_checking():
    sources = {
        "modkit.low.a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from modkit.high.c import C\n",
        "modkit.mid.b": "import modkit.low.a\ndef f():\n    return __import__('modkit.high.c', fromlist=['C']).C\n",
        "modkit.high.c": "from modkit.mid import b\nimport importlib\nimportlib.import_module('modkit.low.a')\n",
        "modkit._base": "",
    }
    arrows, unplaced = upward_arrows(sources, layer_table(TOY_TABLE))
    assert arrows == ["modkit.mid.b → modkit.high.c (line 3): mid is below high"]
    assert unplaced == []


def test_checker_catches_lazy_and_import_module_arrows_and_unplaced_modules():
    sources = {
        "modkit.low.a": "def f():\n    import importlib\n    return importlib.import_module('modkit.mid.b')\n",
        "modkit.mid.b": "def g():\n    from modkit.high.c import C\n",
        "modkit.high.c": "",
        "modkit.elsewhere.d": "",
    }
    arrows, unplaced = upward_arrows(sources, layer_table(TOY_TABLE))
    assert arrows == ["modkit.low.a → modkit.mid.b (line 3): low is below mid",
                      "modkit.mid.b → modkit.high.c (line 2): mid is below high"]
    assert unplaced == ["modkit.elsewhere.d: its folder is not in the layer table of docs/architecture.md"]


def test_cycle_finder_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


# ---------------------------------------------------------------- the package itself


def test_every_import_runs_down_the_documented_layers():
    sources, packages = package_sources()
    arrows, unplaced = upward_arrows(sources, layer_table(ARCHITECTURE.read_text()), packages)
    problems = unplaced + arrows
    assert not problems, "imports against the layer table of docs/architecture.md:\n  " + "\n  ".join(problems)


def test_no_import_circle_in_modkit():
    assert find_cycle(graph()) is None


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
@pytest.mark.slow
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
