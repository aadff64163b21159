"""The package graph: no import cycles, dependencies pointing one way, every module importable.

Data flows dataset -> directions -> steered generation -> judge -> agreement -> report, so
``harness`` may use ``dictionaries``, ``evals`` and ``reports``; ``reports`` may use ``evals``;
``evals`` and ``dictionaries`` use neither of the others (``dictionaries`` may use the leaf
utility module ``evals.io``).
"""

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "dictionaries", "evals", "reports")
ALLOWED = {"harness": set(PACKAGES), "reports": {"reports", "evals"},
           "evals": {"evals"}, "dictionaries": {"dictionaries"}}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(tree: ast.AST):
    """Every import statement that can run: at module level and inside functions, classes and
    branches (imports under ``if TYPE_CHECKING:`` never run and are skipped)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (module level or inside a
    function: a cycle through a function-level import is still a cycle)."""
    found = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for t in sorted(graph.get(m, ())):
            if t not in index:
                visit(t)
                low[m] = min(low[m], low[t])
            elif t in on_stack:
                low[m] = min(low[m], index[t])
        if low[m] == index[m]:
            component = []
            while True:
                t = stack.pop()
                on_stack.discard(t)
                component.append(t)
                if t == m:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    # a package's __init__ importing its own submodules is how packages work; not a cycle
    return {m: {t for t in _imports(p, m, modules) if not t.startswith(m + ".")}
            for m, p in modules.items()}


def test_imports__no_cycles_counting_imports_inside_functions():
    assert _cycles(_graph()) == []


def test_imports__cycle_finder_sees_a_cycle_through_a_function_level_import(tmp_path):
    """The finder is not blind to imports inside functions (where the old one could not see)."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import harness.b\n")
    b.write_text("def f():\n    from harness.a import x\n")
    modules = {"harness.a": a, "harness.b": b}
    graph = {m: _imports(p, m, modules) for m, p in modules.items()}
    assert _cycles(graph) == [["harness.a", "harness.b"]]
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import harness.a\n")
    assert _cycles({m: _imports(p, m, modules) for m, p in modules.items()}) == []


def test_imports__dependencies_point_one_way():
    modules = _modules()
    bad = []
    for m, p in modules.items():
        pkg = m.split(".")[0]
        for t in _imports(p, m, modules):
            if t.split(".")[0] not in ALLOWED[pkg] and not (pkg == "dictionaries"
                                                            and t == "evals.io"):
                bad.append(f"{m} imports {t}")
    assert not bad, bad


def test_imports__every_module_imports_in_a_fresh_interpreter_in_sorted_order():
    names = sorted(m for m in _modules() if not m.endswith("__main__"))  # runs the CLI
    code = "import importlib\nfor n in %r:\n    importlib.import_module(n)\n" % names
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
